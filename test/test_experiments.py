"""The specialization study runner end to end on tiny settings, and the CLI around it."""
import json

import numpy as np
import pytest

from dualdiff_ros.cli import main
from dualdiff_ros.evaluation.experiments import StudySettings, configurations, run_study


@pytest.fixture(scope="module")
def quick_cabinet(tmp_path_factory):
    out = tmp_path_factory.mktemp("cabinet")
    return out, run_study("cabinet", out, StudySettings.quick())


def test_quick_study_writes_table_json_and_plots(quick_cabinet):
    out, result = quick_cabinet
    assert {p.name for p in out.iterdir()} >= {"results.json", "results.md", "cabinet_scatter.png",
                                              "cabinet_loss.png"}
    saved = json.loads((out / "results.json").read_text())
    assert {r["configuration"] for r in saved["rows"]} == set(configurations())
    table = (out / "results.md").read_text()
    assert all(name in table for name in configurations())


def test_quick_study_numbers_are_sane(quick_cabinet):
    _, result = quick_cabinet
    rows = {r["configuration"]: r for r in result["rows"]}
    for row in rows.values():
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["coverage"] <= 1
    # The oracle samples the true region: perfect accuracy, and far better coverage than chance.
    assert rows["oracle"]["accuracy"] == 1.0 and rows["oracle"]["coverage"] > 0.5
    # Even tiny models must beat the general prior at finding this home's region (1/8 of its mass).
    assert rows["fine_tuned"]["accuracy"] > rows["general"]["accuracy"]
    assert rows["corrected"]["model_evaluations"] <= 2 * rows["joint"]["model_evaluations"]
    assert 0 <= rows["proposer"]["fallback_rate"] <= 1


def test_cli_train_then_reuse(tmp_path, capsys):
    args = ["train", "--domain", "cabinet", "--model-dir", str(tmp_path), "--recipe", "quick"]
    assert main(args) == 0
    assert (tmp_path / "cabinet" / "general.safetensors").is_file()
    assert (tmp_path / "cabinet" / "specialized.safetensors").is_file()
    capsys.readouterr()
    assert main(args) == 0
    assert "reusing" in capsys.readouterr().out


def test_cli_rejects_unknown_study(capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "kitchen", "--output", "x"])
    assert "invalid choice" in capsys.readouterr().err


def test_cli_runs_only_the_named_configurations(tmp_path, capsys):
    assert main(["experiment", "cabinet", "--quick", "--output", str(tmp_path), "--configs", "oracle", "proposer"]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert {r["configuration"] for r in rows} == {"oracle", "proposer"}
    with pytest.raises(ValueError, match="unknown configuration.*'joint'"):
        run_study("cabinet", tmp_path, StudySettings.quick(), only=["proposr"])


def test_summary_reports_mean_and_sd():
    from dualdiff_ros.evaluation.experiments import summarize
    rows = [{"domain": "d", "configuration": "c", "accuracy": a, "coverage": 0.5, "recall": 0.5,
             "precision": 0.5, "out_of_range_distance": 1.0, "ms_per_condition": 1.0} for a in (0.8, 1.0)]
    entry = summarize(rows)[0]
    assert entry["accuracy"] == pytest.approx((0.9, 0.1)) and np.isclose(entry["seeds"], 2)


def test_overlap_settings_share_one_general_prior():
    from dualdiff_ros.domains import get_domain
    from dualdiff_ros.evaluation.experiments import train_models

    settings, generals = StudySettings.quick(), {}
    far, _ = train_models(get_domain("overlap_far"), settings, 0, generals)
    subset, _ = train_models(get_domain("overlap_subset"), settings, 0, generals)
    assert far["general"] is subset["general"] and len(generals) == 1
    assert far["fine_tuned"] is not subset["fine_tuned"]
