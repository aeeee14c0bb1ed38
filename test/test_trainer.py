"""learning/trainer.py without ROS: the home's context, the per-domain recipe, request selections."""
import numpy as np
import pytest

from dualdiff_ros.domains.homes import home_frame
from dualdiff_ros.learning import ObservationStore
from dualdiff_ros.learning.in_context import summary
from dualdiff_ros.learning.trainer import Hooks, Trainer, home_context, on_robot_recipe, selection
from dualdiff_ros.model_store import ModelStore
from dualdiff_ros.recipes import recipe


def test_home_context_is_the_summary_of_the_rows_in_the_furniture_frame(tmp_path):
    with ObservationStore(tmp_path / "obs.sqlite") as store:
        for state, target in (([1.0, 2.0, 0.5], [1.5, 2.2, 0.9]), ([1.0, 2.0, 0.5], [0.7, 1.9, 0.6])):
            store.add("cabinet", "", state, target)
        rows = store.list("cabinet", "")
    count, context, points = home_context("cabinet", rows)
    local = home_frame("cabinet", np.array([r.state for r in rows]), np.array([r.target for r in rows]))
    assert count == 2 and np.allclose(context, summary(local)) and np.allclose(points, local)
    none = home_context("cabinet", [])
    assert none[:2] == (0, [0.0] * len(context)) and none[2].shape == (0, 3)


@pytest.mark.parametrize("domain", ["cabinet", "round_table", "navigate_to"])
def test_the_on_robot_recipe_is_the_domains_registry_recipe(domain):
    full = recipe("full", domain)
    assert on_robot_recipe(domain) == full
    tuned = on_robot_recipe(domain, fine_tune_epochs=7, scratch_epochs=9, batch_size=16)
    assert (tuned.fine_tune.epochs, tuned.specialized.epochs, tuned.fine_tune.batch_size) == (7, 9, 16)
    assert (tuned.fine_tune.lr, tuned.fine_tune_lora_rank) == (full.fine_tune.lr, full.fine_tune_lora_rank)


def test_the_trainer_reads_its_parameters_when_it_uses_them(tmp_path):
    values = {"fine_tune_epochs": 0, "scratch_epochs": 0, "batch_size": 0, "min_observations": 3,
              "limits.margin": 1.0}
    contexts = []
    trainer = Trainer(ModelStore(tmp_path / "models"), values.__getitem__, None,
                      Hooks(context=lambda *args: contexts.append(args)), record_service="node/record_observation")
    trainer.open(str(tmp_path / "obs.sqlite"))
    try:
        assert trainer.recipe("navigate_to").fine_tune.epochs == recipe("full", "navigate_to").fine_tune.epochs
        values["fine_tune_epochs"] = 5
        assert trainer.recipe("navigate_to").fine_tune.epochs == 5
        problem = trainer.check_training("cabinet", "", "")
        assert "only 0 observations stored for cabinet" in problem and "node/record_observation" in problem
        values["retrain_every"] = 0
        trainer.record("cabinet", "", [1.0, 2.0, 0.5], [1.5, 2.2, 0.9])
        assert [(d, t, n) for d, t, n, _, _ in contexts] == [("cabinet", "", 1)]
        assert contexts[0][4].shape == (1, 3)  # the observation itself, in the home's frame
        trainer.record("navigate_to", "", [0.0] * 10, [0.0, 0.0])  # not a home family: no context
        assert len(contexts) == 1
    finally:
        trainer.close()


@pytest.mark.parametrize("request_, words", [(("", "cups", False), "a task needs its domain"),
                                              (("cabinet", "cups", True), "exclude each other"),
                                              (("attic", "", False), "unknown domain 'attic'")])
def test_a_bad_selection_names_its_fix(request_, words):
    with pytest.raises(ValueError, match=words):
        selection(*request_)
    assert selection("cabinet", "", True) == ("cabinet", None) and selection("", "", False) == (None, None)


def test_torchs_training_is_set_up_once_per_process():
    """The specialized node warms torch's training up when configured, so the first retraining is not slower."""
    import dualdiff_ros.diffusion.training as training

    training._WARMED_UP = False
    assert training.warm_up_training() > 0
    assert training.warm_up_training() == 0.0 and training._WARMED_UP
