"""`dualdiff benchmark` end to end over DDS on tiny models: it measures real replies and writes its files."""
import json

import pytest
from nodes_support import tiny_models


@pytest.mark.parametrize("mode", ["joint", "specialized"])
def test_benchmark_measures_the_service(tmp_path_factory, tmp_path, mode):
    from dualdiff_ros.evaluation.service_benchmark import run_service_benchmark

    result = run_service_benchmark(str(tiny_models(tmp_path_factory)), tmp_path, requests=6, clients=2,
                                   num_samples=4, mode=mode)
    assert result["request"]["mode"] == mode
    latency = result["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"] and result["requests_per_second"] > 0
    assert json.loads((tmp_path / "benchmark.json").read_text())["latency_ms"] == latency
