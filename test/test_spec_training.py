"""`dualdiff train --spec`: a domain's prior from a spec and Parquet rows, through the same training code."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dualdiff_ros.cli import main as cli_main
from dualdiff_ros.diffusion.checkpoint import load_checkpoint, read_header
from dualdiff_ros.diffusion.composition import compose
from dualdiff_ros.diffusion.sampling import sample
from dualdiff_ros.domains.fleet_data import write_builtin, write_fleet
from dualdiff_ros.domains.spec import DomainSpec, builtin_spec, load_spec
from dualdiff_ros.learning import ObservationStore
from dualdiff_ros.learning.exchange import export_observations
from dualdiff_ros.model_store import ModelStore, train_general
from dualdiff_ros.recipes import recipe as named_recipe
from dualdiff_ros.spec_training import answers_in_world, spec_of_model, spec_recipe, train_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mug_counter"


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def example_generator():
    spec = importlib.util.spec_from_file_location("mug_counter_generate", EXAMPLE / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_spec(**recipe) -> DomainSpec:
    data = load_spec(EXAMPLE / "spec.yaml").to_dict()
    data["recipes"] = {"quick": {"width": 64, "depth": 2, "general_epochs": 30, "general_batch_size": 256,
                                 "fine_tune_epochs": 20, **recipe}}
    return DomainSpec.from_dict(data, "test")


def test_cabinet_through_its_spec_trains_the_prior_its_generator_trains(tmp_path):
    path = write_builtin("cabinet", tmp_path / "cabinet.parquet", 1500, seed=4)
    versions = train_spec(builtin_spec("cabinet"), path, tmp_path / "models", "quick", seed=0, progress=False)
    via_spec = ModelStore(tmp_path / "models").load_general("cabinet")
    from dualdiff_ros.domains import get_domain
    data = get_domain("cabinet").general_dataset(1500, 4)
    direct = train_general("cabinet", data.conditions, data.targets, named_recipe("quick"), 0, progress=False)
    for (name, a), b in zip(via_spec.denoiser.state_dict().items(), direct.denoiser.state_dict().values()):
        assert torch.equal(a, b), name
    assert via_spec.relative_targets and via_spec.metadata["targets_in"] == "world"
    header = read_header(ModelStore(tmp_path / "models").general_path("cabinet"))["metadata"]
    assert header["domain_spec"]["name"] == "cabinet" and header["version"] == versions["general"]


def test_spec_recipe_applies_the_specs_sizes():
    spec = small_spec(lora_rank=0, fine_tune_lr=5e-4, diffusion_steps=25)
    recipe = spec_recipe(spec, "quick")
    assert recipe.architecture == {"name": "mlp", "width": 64, "depth": 2}
    assert (recipe.general.epochs, recipe.general.batch_size) == (30, 256)
    assert (recipe.fine_tune.epochs, recipe.fine_tune.lr, recipe.fine_tune_lora_rank) == (20, 5e-4, 0)
    assert recipe.schedule["num_steps"] == 25 and not recipe.relative_targets
    assert spec_recipe(spec, "demo") == spec_recipe(DomainSpec.from_dict({**spec.to_dict(), "recipes": {}}), "demo")


def test_an_se2_domain_learns_in_the_counters_frame(tmp_path):
    generator = example_generator()
    rng = np.random.default_rng(3)
    states, mugs = generator.home_rows(rng, 3000)  # one home's counter, turned every way
    spec = small_spec()
    home = spec.to_local(states, mugs)
    path = write_fleet(tmp_path / "home.parquet", spec, states, mugs, home_id="h", robot_id="r", task="mug")
    train_spec(spec, path, tmp_path / "models", "quick", seed=0, progress=False)
    model = ModelStore(tmp_path / "models").load_general("mug_counter")
    assert not model.relative_targets and model.metadata["targets_in"] == "spec_frame"
    assert spec_of_model(model).to_dict() == spec.to_dict()
    # New poses of the same counter: the answers, turned back to the counter's frame, are the home's stretch.
    yaws = np.linspace(-math.pi, math.pi, 8, endpoint=False)
    poses = np.column_stack([np.full(8, 2.0), np.full(8, -3.0), yaws, np.full(8, states[0, 3])])
    drawn = sample(model, poses, 64, seed=1)
    world = answers_in_world(model, np.repeat(poses, 64, axis=0), drawn.reshape(-1, 2))
    local = spec.to_local(np.repeat(poses, 64, axis=0), world)
    low, high = home.min(axis=0), home.max(axis=0)
    inside = np.all((local >= low - 0.15) & (local <= high + 0.15), axis=1)
    assert inside.mean() > 0.8, f"{inside.mean():.2f} of the answers on the home's stretch"
    # The answers in world coordinates are spread as the counter turns (they rotate with it).
    centres = world.reshape(8, 64, 2).mean(axis=1)
    assert np.ptp(centres[:, 0]) > 0.3 or np.ptp(centres[:, 1]) > 0.3


def test_a_specialist_composes_with_its_prior(tmp_path):
    generator = example_generator()
    spec = small_spec()
    fleet = [generator.home_rows(np.random.default_rng(s), 100) for s in range(20)]
    write_fleet(tmp_path / "fleet.parquet", spec, np.concatenate([s for s, _ in fleet]),
                np.concatenate([m for _, m in fleet]))
    states, mugs = generator.home_rows(np.random.default_rng(99), 24)
    write_fleet(tmp_path / "home.parquet", spec, states, mugs)
    versions = train_spec(spec, tmp_path / "fleet.parquet", tmp_path / "models", "quick",
                          specialized_data=tmp_path / "home.parquet", progress=False)
    store = ModelStore(tmp_path / "models")
    general, special = store.load_general("mug_counter"), store.load_specialized("mug_counter")
    assert special.metadata["general_version"] == versions["general"]
    assert special.metadata["targets_in"] == "spec_frame"
    result = compose(general, special, states[:2], 16)
    world = answers_in_world(general, np.repeat(states[:2], 16, axis=0), result.samples.reshape(-1, 2))
    assert world.shape == (32, 2) and np.isfinite(world).all()


def test_the_fleet_loop_two_robots_export_and_one_prior_trains_on_both(tmp_path):
    generator = example_generator()
    spec = small_spec()
    exports = tmp_path / "exports"
    for robot in ("r1", "r2"):
        states, mugs = generator.home_rows(np.random.default_rng(len(robot) + (robot == "r2")), 150)
        with ObservationStore(tmp_path / f"{robot}.db") as store:  # what the robot's node recorded
            store.add_many(("mug_counter", "mug", s, m, None) for s, m in zip(states.tolist(), mugs.tolist()))
        export_observations(tmp_path / f"{robot}.db", exports / f"{robot}.parquet", spec, robot_id=robot,
                            home_id=f"home-{robot}")
    train_spec(spec, exports, tmp_path / "models", "quick", progress=False)
    header = read_header(ModelStore(tmp_path / "models").general_path("mug_counter"))["metadata"]
    assert header["fleet_data"] == {"rows": 300, "skipped": 0, "files": 2, "homes": 2, "robots": 2}


def test_train_command_line(tmp_path, capsys):
    generator = example_generator()
    assert generator.main(["--output", str(tmp_path / "fleet.parquet"), "--homes", "20", "--rows", "20"]) == 0
    assert generator.main(["--output", str(tmp_path / "home.parquet"), "--homes", "1", "--rows", "16",
                           "--seed", "5"]) == 0
    spec_file = EXAMPLE / "spec.yaml"
    args = ["train", "--spec", str(spec_file), "--data", str(tmp_path / "fleet.parquet"), "--model-dir",
            str(tmp_path / "models"), "--recipe", "quick", "--specialized-data", str(tmp_path / "home.parquet")]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "400 rows kept of 400" in out and "from 20 home(s)" in out
    model = load_checkpoint(ModelStore(tmp_path / "models").specialized_path("mug_counter"))
    assert model.metadata["domain_spec"]["frame"]["type"] == "se2"


@pytest.mark.parametrize("extra, words", [
    (["--home-aware"], "--home-aware is not yet available with --spec"),
    (["--domain", "cabinet"], "--spec and --domain cabinet: give one of them"),
    (["--general-epochs", "3"], "--general-epochs is for the navigate-to shard set"),
])
def test_train_refuses_what_it_cannot_do(tmp_path, capsys, extra, words):
    path = write_builtin("cabinet", tmp_path / "c.parquet", 100)
    assert cli_main(["train", "--spec", "cabinet", "--data", str(path), "--model-dir", str(tmp_path / "m"),
                     "--recipe", "quick", *extra]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_train_errors_for_missing_or_bad_inputs(tmp_path, capsys):
    spec_file = EXAMPLE / "spec.yaml"
    assert cli_main(["train", "--spec", str(spec_file), "--model-dir", str(tmp_path / "m")]) == 2
    assert "--spec needs --data" in capsys.readouterr().err
    assert cli_main(["train", "--spec", str(spec_file), "--data", str(tmp_path / "none"), "--model-dir",
                     str(tmp_path / "m")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    cabinet = write_builtin("cabinet", tmp_path / "c.parquet", 100)
    assert cli_main(["train", "--spec", str(spec_file), "--data", str(cabinet), "--model-dir",
                     str(tmp_path / "m")]) == 2
    assert "'state.yaw' is missing" in capsys.readouterr().err
    assert cli_main(["train", "--domain", "cabinet", "--specialized-data", str(cabinet), "--model-dir",
                     str(tmp_path / "m")]) == 2
    assert "--specialized-data is for --spec domains" in capsys.readouterr().err


def test_helpers_for_serving_spec_domains(tmp_path):
    from dualdiff_ros.spec_training import domains_in, state_meaning, targets_for_model

    generator = example_generator()
    spec = small_spec()
    states, mugs = generator.home_rows(np.random.default_rng(0), 300)
    write_fleet(tmp_path / "m.parquet", spec, states, mugs)
    train_spec(spec, tmp_path / "m.parquet", tmp_path / "models", "quick", progress=False)
    write_builtin("cabinet", tmp_path / "c.parquet", 300)
    train_spec(builtin_spec("cabinet"), tmp_path / "c.parquet", tmp_path / "models", "quick", progress=False)
    (tmp_path / "models" / "junk").mkdir()
    (tmp_path / "models" / "junk" / "general.safetensors").write_text("not a checkpoint")
    found = domains_in(tmp_path / "models")
    assert sorted(found) == ["cabinet", "mug_counter"] and found["mug_counter"].frame == "se2"
    assert domains_in(tmp_path / "nowhere") == {}
    assert state_meaning(found["mug_counter"]) == "x (m), y (m), yaw (rad), length (m)"
    mug_model = ModelStore(tmp_path / "models").load_general("mug_counter")
    np.testing.assert_allclose(targets_for_model(mug_model, states, mugs), spec.to_local(states, mugs))
    cabinet = ModelStore(tmp_path / "models").load_general("cabinet")
    np.testing.assert_array_equal(targets_for_model(cabinet, np.zeros((1, 3)), np.ones((1, 3))), np.ones((1, 3)))


def test_a_shard_set_of_the_rows_trains_the_same_prior(tmp_path, capsys):
    generator = example_generator()
    spec = small_spec()
    states, mugs = generator.home_rows(np.random.default_rng(2), 700)
    states[5, 0] = np.inf
    write_fleet(tmp_path / "fleet" / "a.parquet", spec, states[:300], mugs[:300])
    write_fleet(tmp_path / "fleet" / "b.parquet", spec, states[300:], mugs[300:])
    from dualdiff_ros.spec_training import write_spec_shards
    shards = write_spec_shards(spec, tmp_path / "fleet", tmp_path / "shards", rows_per_shard=256)
    assert len(shards) == 699 and len(shards.manifest["shards"]) == 3 and shards.meta["rows_skipped"] == 1
    train_spec(spec, tmp_path / "fleet", tmp_path / "from_rows", "quick", progress=False)
    train_spec(spec, tmp_path / "shards", tmp_path / "from_shards", "quick", progress=False)
    a = ModelStore(tmp_path / "from_rows").load_general("mug_counter")
    b = ModelStore(tmp_path / "from_shards").load_general("mug_counter")
    for (name, x), y in zip(a.denoiser.state_dict().items(), b.denoiser.state_dict().values()):
        assert torch.equal(x, y), name
    assert b.metadata["targets_in"] == "spec_frame" and b.metadata["fleet_data"]["rows"] == 699
    other = DomainSpec.from_dict({**spec.to_dict(), "frame": {"type": "translation", "origin": ["x", "y"]}})
    with pytest.raises(ValueError, match="written for another spec"):
        train_spec(other, tmp_path / "shards", tmp_path / "m", "quick", progress=False)
