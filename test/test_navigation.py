"""The navigate-to study end to end on tiny data: files written, numbers sane, checkpoints servable."""
import argparse
import json

import numpy as np
import pytest
import torch

from dualdiff_ros.diffusion.sampling import sample
from dualdiff_ros.evaluation import navigation
from dualdiff_ros.model_store import ModelStore
from dualdiff_ros.navigate_to import PatchSpec, model_conditions
from dualdiff_ros.training_jobs import train_navigation

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("navigation_data")


@pytest.fixture(scope="module")
def study(tmp_path_factory, data_dir):
    output = tmp_path_factory.mktemp("navigation")
    result = navigation.run_navigation_study(output, navigation.NavigationSettings.quick(data_dir=str(data_dir)))
    return output, result


def test_quick_study_writes_its_files(study):
    output, result = study
    for name in ("results.json", "results.md", "navigation_validity.png", "navigation_scene_0.png",
                 "navigation_loss.png", "models/navigate_to/general.safetensors"):
        assert (output / name).is_file(), name
    assert json.loads((output / "results.json").read_text())["study"] == "navigate_to"
    table = (output / "results.md").read_text()
    assert all(f"| {name} |" in table for name in navigation.CONFIGURATIONS)


def test_quick_study_numbers_are_sane(study):
    _, result = study
    rows = {r["configuration"]: r for r in result["rows"]}
    assert set(rows) == set(navigation.CONFIGURATIONS)  # ring baseline included
    for name, row in rows.items():
        assert 0.0 <= row["validity"] <= 1.0 and 0.0 <= row["success"] <= 1.0
        if name not in navigation.CHECKED:
            assert row["validity"] <= row["validity_without_clutter"] <= 1.0  # clutter only takes targets away
        assert 1.0 <= row["samples_to_first_valid"] <= row["cap"]
        assert row["ms_per_query"] >= 0 and row["n_states"] == result["data"]["evaluated_states"]
    assert rows["joint"]["samples_to_first_valid"] <= rows["joint"]["cap"] == 9
    assert 0.0 <= rows["proposer"]["fallback_rate"] <= 1.0
    assert "log_overlap" in rows["corrected"]
    for name in navigation.CHECKED:  # answers after the map check: PyBullet agrees with the map
        assert rows[name]["validity"] >= 0.95 and rows[name]["candidates_per_valid"] >= 1.0
    assert rows["ring_map"]["validity"] > rows["ring"]["validity"]
    assert {e["configuration"] for e in result["summary"]} == set(navigation.CONFIGURATIONS)


def test_train_navigation_writes_loadable_checkpoints(tmp_path, data_dir):
    versions = train_navigation(tmp_path / "models", "quick", seed=1, data_dir=data_dir)
    store = ModelStore(tmp_path / "models")
    general, specialized = store.load_general("navigate_to"), store.load_specialized("navigate_to")
    assert versions["general"] == general.metadata["version"] and specialized.metadata["recipe"] == "quick"
    spec = PatchSpec.from_dict(general.metadata["perception"])  # the quick recipe sees the map
    assert specialized.metadata["method"] == "fine_tune" and general.condition_dim == 10 + spec.feature_dim
    assert general.metadata["serving"] == {"general_min_t_fraction": 0.0}  # the placement service's plain sum
    state = np.array([[5.0, 5.0, 0.4, 0.4, 0.0, 0.0, 8.0, 8.0, 0.0, 1.0]])
    targets = sample(specialized, model_conditions(specialized, state), 4)
    assert targets.shape == (1, 4, 2) and np.isfinite(targets).all()


def test_a_study_of_some_configurations_trains_only_their_models(tmp_path, data_dir):
    settings = navigation.NavigationSettings.quick(data_dir=str(data_dir), configurations=("general", "ring"))
    result = navigation.run_navigation_study(tmp_path, settings)
    assert {r["configuration"] for r in result["rows"]} == {"general", "ring"}
    store = ModelStore(tmp_path / "models")
    assert store.general_path("navigate_to").is_file() and not store.specialized_path("navigate_to").exists()


def test_a_study_with_nav2_costmaps_checks_answers_on_them(tmp_path, data_dir):
    """`--map costmap`: each state's map as nav2 publishes it; the map check reads it as a costmap and passes poses."""
    settings = navigation.NavigationSettings.quick(data_dir=str(data_dir), configurations=("ring_map",),
                                                   map_kind="costmap")
    held = navigation.sim.held_out_states(navigation.load_datasets(settings)[2]).head(4)
    perception = navigation.Perception(held, None, "costmap", 0.05, settings.map_check)
    grid = perception.grid(held.states[0])
    assert grid.semantics == "costmap" and (grid.data == 99).any() and (grid.data == 100).any()
    result = navigation.run_navigation_study(tmp_path, settings)
    row = result["rows"][0]
    assert row["configuration"] == "ring_map" and row["success"] > 0.5 and row["validity"] > 0.9
    with pytest.raises(ValueError, match="map kind 'costs'"):
        navigation.Perception(held, None, "costs")


def test_command_line_options_reach_the_settings(tmp_path):
    parser = navigation.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--quick", "--output", str(tmp_path), "--seeds", "3", "4", "--num-states", "7",
                              "--samples-per-state", "5", "--configs", "proposer", "ring"])
    settings = navigation.settings_from_args(args)
    assert settings.seeds == (3, 4) and settings.num_states == 7 and settings.samples_per_state == 5
    assert settings.configurations == ("proposer", "ring")
    assert settings.data_dir == str(tmp_path / "data") and settings.general_tasks == 100
    assert navigation.settings_from_args(parser.parse_args(["--general-model", "p.safetensors"])).general_model \
        == "p.safetensors"
    mapped = navigation.settings_from_args(parser.parse_args(["--map", "costmap", "--map-resolution", "0.1"]))
    assert (mapped.map_kind, mapped.map_resolution) == ("costmap", 0.1)


def test_a_study_evaluates_a_prior_trained_on_shards_with_its_own_epochs(tmp_path, data_dir):
    from dualdiff_ros.diffusion.checkpoint import load_checkpoint
    from dualdiff_ros.fleet import write_navigation_shards
    from dualdiff_ros.recipes import recipe
    from dualdiff_ros.train import add_arguments, run

    shards = write_navigation_shards(tmp_path / "shards", 4, recipe("quick", "navigate_to"), workers=1, chunk=2,
                                     progress=False)
    args = add_arguments(argparse.ArgumentParser()).parse_args(
        ["--domain", "navigate_to", "--recipe", "quick", "--data", str(tmp_path / "shards"),
         "--model-dir", str(tmp_path / "models"), "--general-epochs", "2", "--state-every", "0"])
    assert run(args) == 0
    prior_path = ModelStore(tmp_path / "models").general_path("navigate_to")
    record = load_checkpoint(prior_path).metadata["training"][-1]
    assert record["epochs"] == 2 and record["num_examples"] == len(shards)  # not the recipe's 8

    settings = navigation.NavigationSettings.quick(data_dir=str(data_dir), configurations=("general", "fine_tuned"),
                                                   general_model=str(prior_path))
    result = navigation.run_navigation_study(tmp_path / "study", settings)
    assert result["data"]["general_points"] == len(shards)
    assert {r["configuration"] for r in result["rows"]} == {"general", "fine_tuned"}
    evaluated = load_checkpoint(tmp_path / "study" / "models" / "navigate_to" / "general.safetensors")
    assert evaluated.metadata["version"] == load_checkpoint(prior_path).metadata["version"]  # used, not retrained


def test_general_epochs_without_a_shard_set_is_refused(tmp_path):
    from dualdiff_ros.train import add_arguments, run

    args = add_arguments(argparse.ArgumentParser()).parse_args(
        ["--domain", "cabinet", "--recipe", "quick", "--model-dir", str(tmp_path), "--general-epochs", "3"])
    with pytest.raises(ValueError, match="--general-epochs 3"):
        run(args)
