"""A user's domain served by the real nodes with no code edits: spec -> Parquet -> train -> serve -> record -> retrain.

The fourth domain is examples/mug_counter: a state of 4 numbers (the counter's x, y, heading and
length), a target of 2 (a mug's x, y) learned in the counter's SE(2) frame. Nothing in the code
names it: the spec file and the Parquet rows are all there is, as a user would bring them.
"""
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rclpy
import torch
import yaml
from dualdiff_interfaces.msg import ModelInfo
from dualdiff_interfaces.srv import ProposePlacements, RecordObservation, TrainSpecialized
from nodes_support import TIMEOUT, Inbox, call, tiny_recipe

from dualdiff_ros import navigate_to, serving
from dualdiff_ros.bringup import start_nodes, stop_nodes
from dualdiff_ros.cli import main as cli_main
from dualdiff_ros.diffusion.checkpoint import CheckpointError, read_header
from dualdiff_ros.domains.spec import BUILTIN_SPECS, DomainSpec, builtin_spec, load_spec
from dualdiff_ros.learning.trainer import Hooks, Trainer, on_robot_recipe
from dualdiff_ros.model_store import ModelStore
from dualdiff_ros.nodes.topics import MODEL_INFO_TOPIC, PROPOSE_SERVICE, TRAIN_SERVICE, latched_qos
from dualdiff_ros.recipes import recipe as named_recipe

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mug_counter"
RECORD_SERVICE = "/specialized_model_node/record_observation"
Response = ProposePlacements.Response
# The home the robot lives in: its counter and where its mugs are (the generator's home_rows, seed 7).
HOME_SEED, HOME_ROWS = 7, 32


def generator():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mug_counter_generate", EXAMPLE / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mug_models(tmp_path_factory):
    """The README's steps: generate fleet rows, write the spec (sizes for a quick test), `dualdiff train --spec`."""
    root = tmp_path_factory.mktemp("mug_counter")
    subprocess.run([sys.executable, str(EXAMPLE / "generate.py"), "--output", str(root / "fleet" / "mugs.parquet"),
                    "--homes", "150", "--rows", "40"], check=True, capture_output=True)
    spec = yaml.safe_load((EXAMPLE / "spec.yaml").read_text())
    # The spec's own recipe sizes: a small prior for the test, and the on-robot fine-tune of this domain.
    spec["recipes"] = {"quick": {"width": 64, "depth": 2, "general_epochs": 40, "general_batch_size": 256},
                       "full": {"fine_tune_epochs": 150, "lora_rank": 4}}
    (root / "mug_counter.yaml").write_text(yaml.safe_dump(spec))
    torch.set_num_threads(1)
    assert cli_main(["--threads", "1", "train", "--spec", str(root / "mug_counter.yaml"), "--data",
                     str(root / "fleet"), "--model-dir", str(root / "models"), "--recipe", "quick"]) == 0
    return root


def home():
    """(states, mugs) of the robot's home: one counter seen at many poses, its mugs in one stretch."""
    return generator().home_rows(np.random.default_rng(HOME_SEED), HOME_ROWS)


def on_home_stretch(spec: DomainSpec, state, proposals, home_local, slack=0.15) -> float:
    """Fraction of the proposals that lie, in the counter's frame, in the box of the home's own mugs."""
    local = spec.to_local(np.asarray(state)[None], proposals)
    low, high = home_local.min(axis=0) - slack, home_local.max(axis=0) + slack
    return float(np.all((local >= low) & (local <= high), axis=1).mean())


# ---- without ROS -------------------------------------------------------------------------------
def test_the_service_answers_a_spec_domain_in_the_world_frame(mug_models):
    svc = serving.PlacementService(mug_models / "models")
    root = mug_models / "models"
    path = root / "mug_counter" / "general.safetensors"
    with pytest.raises(serving.Refused, match="unknown domain 'mug_counter': use one of cabinet, navigate_to"):
        svc.answer("mug_counter", "", "general", [3.0, -4.0, 0.0, 2.0], 8)  # nothing of it loaded yet
    svc.slots.put(("general", "mug_counter", ""), serving.load_for_slot("general", "mug_counter", "", path, root))
    assert "mug_counter" in svc.served() and svc.spec_for("mug_counter").frame == "se2"
    spec = svc.spec_for("mug_counter")
    for state in ([3.0, -4.0, 0.0, 2.0], [3.0, -4.0, 2.0, 2.0]):  # one counter, turned
        answer = svc.answer("mug_counter", "", "general", state, 128, seed=5)
        assert answer.proposals.shape == (128, 2) and answer.yaws is None
        # In the counter's frame the mugs lie on its top (0.6 m deep, at most its length long) ...
        local = spec.to_local(np.asarray(state)[None], answer.proposals)
        on_top = (np.abs(local[:, 1]) <= 0.45) & (np.abs(local[:, 0]) <= state[3] / 2 + 0.3)
        assert on_top.mean() >= 0.8, f"{on_top.mean():.2f} of the proposals on the counter's top"
        # ... which in the world is around the counter (answers turned back from the counter's frame).
        assert np.linalg.norm(answer.proposals.mean(axis=0) - state[:2]) < 1.0
    with pytest.raises(serving.Refused) as refused:
        svc.answer("mug_counter", "", "general", [3.0, -4.0, 0.0], 8)
    assert refused.value.result == serving.RESULT_INVALID_REQUEST
    assert "3 numbers" in str(refused.value) and "needs 4" in str(refused.value) and "yaw (rad)" in str(refused.value)


def test_a_checkpoint_without_its_domains_spec_is_refused(tmp_path):
    from dualdiff_ros.model_store import save, train_general

    recipe = replace(tiny_recipe(), general=replace(tiny_recipe().general, steps=5))
    rng = np.random.default_rng(0)
    model = train_general("attic", rng.normal(size=(64, 4)), rng.normal(size=(64, 2)), recipe, progress=False)
    path = tmp_path / "attic" / "general.safetensors"
    save(model, path)  # no spec in its header, and attic is not built-in: nothing says its sizes
    with pytest.raises(CheckpointError, match="carries no domain spec for attic.*--spec"):
        serving.load_for_slot("general", "attic", "", path, tmp_path)


def test_a_spec_with_a_map_check_reads_the_footprint_from_its_own_fields():
    spec = DomainSpec.from_dict({
        "name": "shelf", "state": [{"name": n} for n in ("robot_x", "yaw", "cx", "cy", "w", "h")],
        "target": [{"name": "x"}, {"name": "y"}], "frame": {"type": "absolute"},
        "map_check": {"object": {"x": "cx", "y": "cy", "width": "w", "height": "h", "yaw": "yaw"}}})
    state = np.array([9.0, 0.3, 4.0, 5.0, 1.0, 2.0])
    request = serving.Request("shelf", "", "general", state, 1, 0.0, None, None, spec)
    np.testing.assert_allclose(request.map_state, [4.0, 5.0, 1.0, 2.0, 0.3, 0, 0, 0, 0, 0])
    navigate = builtin_spec("navigate_to")  # the built-in layout: its own first five numbers
    nav_state = np.arange(10.0)
    np.testing.assert_allclose(navigate_to.footprint_state(nav_state, navigate.map_object_index)[:5], nav_state[:5])


@pytest.mark.parametrize("domain", BUILTIN_SPECS)
def test_a_builtin_domain_specializes_with_the_recipe_it_had(domain):
    """The spec's recipe (no recipes section) fine-tunes as the registry's did: built-in behaviour unchanged."""
    old, new = named_recipe("full", domain), on_robot_recipe(domain, spec=builtin_spec(domain))
    assert (new.fine_tune, new.specialized, new.fine_tune_lora_rank) == (old.fine_tune, old.specialized,
                                                                         old.fine_tune_lora_rank)


def test_the_trainer_checks_a_spec_domains_observations_in_its_frame(mug_models, tmp_path):
    settings = {"fine_tune_epochs": 0, "scratch_epochs": 0, "batch_size": 0, "limits.margin": 1.0}
    trainer = Trainer(ModelStore(mug_models / "models"), settings.__getitem__, None, Hooks())
    spec = trainer.spec("mug_counter")
    assert spec.name == "mug_counter" and trainer.recipe("mug_counter").fine_tune_lora_rank == 4
    # A counter far from the origin, turned: its mug is plausible in the counter's frame, where the prior's
    # target range is; compared in world numbers (8.3, 8.5) it would lie far outside that range.
    state, mug = [8.0, 8.0, 1.0, 2.0], spec.from_local([[8.0, 8.0, 1.0, 2.0]], [[0.4, 0.1]])[0]
    assert trainer.check_observation("mug_counter", "", state, mug) is None
    far = spec.from_local([state], [[0.4, 3.0]])[0]  # 3 m behind the counter's back edge
    assert "outside the plausible range" in trainer.check_observation("mug_counter", "", state, far)
    wrong = trainer.check_observation("mug_counter", "", state[:3], mug)
    assert "state has 3 numbers, this domain needs 4" in wrong and "length" in wrong
    assert "unknown domain 'attic'" in trainer.check_observation("attic", "", state, mug)
    assert "mug_counter" in trainer.check_observation("attic", "", state, mug)  # the known ones are named


# ---- through the nodes, over DDS -----------------------------------------------------------------
def test_a_users_domain_is_served_recorded_and_retrained_by_the_nodes(mug_models, ros_context, spin_in_thread,
                                                                      tmp_path, wait_for):
    models = mug_models / "models"
    spec = load_spec(mug_models / "mug_counter.yaml")
    executor, nodes = start_nodes(ros_context, "config/bringup.yaml", str(models),
                                  nodes=("placement_proposal_node", "specialized_model_node"),
                                  overrides={"specialized_model_node": {"db_path": str(tmp_path / "obs.sqlite"),
                                                                        "retrain_every": 0, "min_observations": 8}})
    proposal = next(n for n in nodes if n.get_name() == "placement_proposal_node")
    probe = rclpy.create_node("spec_serving_probe", context=ros_context)
    executor.add_node(probe)
    announced = Inbox(probe, ModelInfo, MODEL_INFO_TOPIC, latched_qos())
    spin_in_thread(executor)
    try:
        propose = probe.create_client(ProposePlacements, PROPOSE_SERVICE)
        record = probe.create_client(RecordObservation, RECORD_SERVICE)
        train = probe.create_client(TrainSpecialized, TRAIN_SERVICE)
        for client in (propose, record, train):
            assert client.wait_for_service(timeout_sec=TIMEOUT), f"{client.srv_name} not discovered"
        states, mugs = home()
        home_local = spec.to_local(states, mugs)
        state = [1.0, 2.0, 0.7, float(states[0, 3])]  # the home's counter, at a pose it was not seen at

        # Served from its prior, found in model_dir: 2-D targets as (x, y, 0), a pose each.
        general = call(propose, ProposePlacements.Request(domain="mug_counter", state=state, num_samples=64,
                                                          mode="general", seed=3))
        assert general.result == Response.RESULT_OK, general.message
        assert len(general.proposals) == len(general.poses) == 64 and all(p.z == 0.0 for p in general.proposals)
        general_xy = np.array([[p.x, p.y] for p in general.proposals])
        local = spec.to_local(np.asarray(state)[None], general_xy)
        assert (np.abs(local[:, 1]) <= 0.45).mean() >= 0.8, "the prior's mugs are not on the counter's top"

        # A state of the wrong size is refused, naming both sizes and the spec's fields.
        wrong = call(propose, ProposePlacements.Request(domain="mug_counter", state=state[:3], num_samples=4))
        assert wrong.result == Response.RESULT_INVALID_REQUEST
        assert "3 numbers" in wrong.message and "needs 4" in wrong.message and "length (m)" in wrong.message

        # The robot records its home's mugs (world coordinates) through the real specialized node.
        bad = call(record, RecordObservation.Request(domain="mug_counter", state=state[:3], target=[1.0, 2.0]))
        assert bad.result == RecordObservation.Response.RESULT_INVALID_REQUEST and "needs 4" in bad.message
        for s, m in zip(states.tolist(), mugs.tolist()):
            reply = call(record, RecordObservation.Request(domain="mug_counter", state=s, target=m))
            assert reply.result == RecordObservation.Response.RESULT_OK, reply.message

        # Retrain: the specialist is fine-tuned with this domain's recipe and announced to the proposal node.
        started = call(train, TrainSpecialized.Request(domain="mug_counter"))
        assert started.result == TrainSpecialized.Response.RESULT_OK, started.message
        assert wait_for(lambda: any(m.domain == "mug_counter" and m.role == "specialized"
                                    for m in announced.snapshot()), 120), "no specialist announced"
        info = [m for m in announced.snapshot() if m.domain == "mug_counter" and m.role == "specialized"][-1]
        assert wait_for(lambda: proposal.models.version(("specialized", "mug_counter", "")) == info.version, TIMEOUT)
        header = read_header(ModelStore(models).specialized_path("mug_counter"))["metadata"]
        assert header["targets_in"] == "spec_frame" and header["domain_spec"]["name"] == "mug_counter"
        assert header["lora_rank"] == 4  # the spec's recipes.full, not the registry's rank 8

        # Served joint: the prior composed with the home's specialist, answers on the home's stretch.
        joint = call(propose, ProposePlacements.Request(domain="mug_counter", state=state, num_samples=64,
                                                        mode="joint", seed=3))
        assert joint.result == Response.RESULT_OK, joint.message
        assert joint.mode_used == "joint" and joint.specialized_version == info.version, joint.message
        joint_xy = np.array([[p.x, p.y] for p in joint.proposals])
        before, after = (on_home_stretch(spec, state, xy, home_local) for xy in (general_xy, joint_xy))
        assert after >= 0.6 and after > before + 0.15, f"on the home's stretch: prior {before:.2f}, joint {after:.2f}"
    finally:
        stop_nodes(executor, [*nodes, probe])
