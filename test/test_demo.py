"""`dualdiff demo` end to end with tiny models: train, serve over DDS, evaluate through the service, plot."""
import json

from dualdiff_ros.cli import main
from dualdiff_ros.demo import DOMAINS, MODES


def test_demo_runs_end_to_end_and_reuses_its_models(tmp_path, capsys):
    models, out = tmp_path / "models", tmp_path / "demo"
    args = ["demo", "--model-dir", str(models), "--output", str(out), "--recipe", "quick", "--eval-conditions", "6"]
    assert main(args) == 0
    rows = json.loads((out / "results.json").read_text())
    assert {(r["domain"], r["mode"]) for r in rows} == {(d, m) for d in DOMAINS for m in MODES}
    assert all(0 <= r["accuracy"] <= 1 and 0 <= r["coverage"] <= 1 for r in rows)
    for domain in DOMAINS:
        assert (out / f"{domain}_proposals.png").stat().st_size > 10_000
    assert (out / "navigate_to_poses.png").stat().st_size > 10_000  # scene, poses and the map patch
    printed = capsys.readouterr().out
    assert "[demo] navigate_to ball at" in printed and "from /dualdiff/scene_map" in printed
    assert "| cabinet | joint |" in printed and "proposal (" in printed
    assert main(["train", "--model-dir", str(models), "--recipe", "quick"]) == 0
    assert printed.count("[train]") > 2 and capsys.readouterr().out.count("reusing") == 2
