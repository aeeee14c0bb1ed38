"""`dualdiff reliability` end to end at small size: probes refused, load answered, kill -9 loses nothing."""
from nodes_support import tiny_models

from dualdiff_ros.evaluation.reliability import run_reliability


def test_reliability_run_refuses_every_probe_and_loses_no_acknowledged_observation(tmp_path_factory, tmp_path):
    result = run_reliability(str(tiny_models(tmp_path_factory)), str(tmp_path), per_client=5, kill_rounds=1,
                             kill_after=2.0, small_seconds=1.0)
    probes = {p["probe"]: p for p in result["probes"]}
    served = ("256 proposals, default settings", "after a forged announcement (round-table specialist as cabinet's)")
    for name, probe in probes.items():
        assert probe["result"] == (0 if name in served else 1), probe
        assert probe["message_bytes"] < 500 and "NON-FINITE" not in probe["message"]
    assert result["load"]["requests"] == 40 and result["load"]["wrong_results"] == 0
    assert result["small_beside_large"]["small_requests"] > 0
    (kill,) = result["kill9"]
    assert kill["acknowledged"] > 0 and kill["lost"] == 0 and kill["present"] == kill["acknowledged"]
    assert (tmp_path / "reliability.md").read_text().count("|") > 20
