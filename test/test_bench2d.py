"""`dualdiff bench-2d`: configurations and a quick end-to-end run that writes every output."""
import argparse
import json

import numpy as np
import pytest
import torch

from dualdiff_ros.diffusion.denoisers import build_denoiser, count_parameters
from dualdiff_ros.evaluation.bench2d import add_arguments, bench_configs, main, matched_width, summarize


def test_wide_baseline_matches_the_dual_expert_within_5_percent():
    configs = bench_configs()
    dual = count_parameters(build_denoiser("dual_expert", 2, 0))
    width = configs["baseline_wide"].architecture["width"]
    wide = count_parameters(build_denoiser("resmlp", 2, 0, width=width))
    assert abs(wide - dual) / dual < 0.05
    assert matched_width(count_parameters(build_denoiser("resmlp", 2, 0))) == 256


def test_seed_and_ours_families_are_separate_rows():
    configs = bench_configs()
    assert {c.family for c in configs.values()} == {"seed", "ours"}
    seed = configs["baseline"].schedule
    assert seed == {"kind": "linear", "num_steps": 100, "beta_start": 1e-4, "beta_end": 0.02}
    assert configs["dual_expert_div0.1"].architecture["diversity_weight"] == 0.1
    assert configs["ours_wide_large_variance"].sampler().variance == "large"
    assert all(c.sampler().clip is None for c in configs.values())  # raw units reach +-4: no [-1.5, 1.5] clip


def test_cli_options_parse():
    parser = add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--output", "x", "--quick", "--datasets", "dino"])
    assert args.seeds == [0, 1, 2] and args.quick and args.datasets == ["dino"] and args.steps is None


def test_summary_gives_mean_and_sd_over_seeds():
    runs = [{"dataset": "dino", "config": "baseline", "parameters": 1, "kl": v, "kl_floor": -0.07,
             "eval_loss": 0.3, "train_seconds": 1.0, "sample_seconds": 1.0} for v in (1.0, 2.0, 3.0)]
    (row,) = summarize(runs)
    assert row["kl"]["mean"] == 2.0 and row["kl"]["sd"] == 1.0 and row["paper_kl"] == 1.060


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_quick_run_writes_every_output(tmp_path, restore_threads):
    # main() applies $DUALDIFF_THREADS (default 1), as `dualdiff --threads` does.
    argv = ["--quick", "--output", str(tmp_path), "--datasets", "dino",
            "--configs", "baseline", "dual_expert", "--no-progress", "--save-models"]
    assert main(argv) == 0
    assert torch.get_num_threads() == 1
    results = json.loads((tmp_path / "results.json").read_text())
    assert {(r["config"], r["seed"]) for r in results["runs"]} == {("baseline", 0), ("dual_expert", 0)}
    for run in results["runs"]:
        samples = np.load(tmp_path / run["samples_file"])
        assert samples.shape == (results["settings"]["n_generated"], 2) and np.isfinite(samples).all()
        assert np.isfinite(run["kl"]) and np.isfinite(run["kl_floor"]) and run["eval_loss"] > 0
    dual = next(r for r in results["runs"] if r["config"] == "dual_expert")
    assert sum(dual["gate_histogram"]) == 100 * results["settings"]["n_generated"]  # every sample, every step
    assert len(dual["gate_mean_per_step"]) == 100
    table = (tmp_path / "results.md").read_text()
    assert "| dino | dual_expert | seed |" in table and "±" in table
    assert (tmp_path / "samples_grid.png").stat().st_size > 0
    assert (tmp_path / "models" / "dino" / "dual_expert_seed0.safetensors").exists()
    assert (tmp_path / "gate_histograms.png").stat().st_size > 0
    # Resuming with the same settings reuses the finished runs instead of training again.
    assert main([*argv, "--resume"]) == 0
    assert len(json.loads((tmp_path / "results.json").read_text())["runs"]) == 2


def test_cli_runs_without_a_threads_option(tmp_path, restore_threads):
    # The sub-command's --threads must not shadow `dualdiff --threads` with None (it crashed).
    from dualdiff_ros.cli import main as dualdiff
    argv = ["bench-2d", "--quick", "--output", str(tmp_path), "--datasets", "moons", "--configs",
            "ours_matched_start", "--no-progress"]
    assert dualdiff(argv) == 0 and torch.get_num_threads() == 1
    (run,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert run["config"] == "ours_matched_start" and np.isfinite(run["kl"])
