"""Training refuses non-finite data and fails (saving nothing) when the loss or the weights go non-finite."""
import numpy as np
import pytest
import torch

from dualdiff_ros.diffusion import training
from dualdiff_ros.diffusion.model import DiffusionModel
from dualdiff_ros.diffusion.normalizer import Normalizer
from dualdiff_ros.diffusion.schedules import NoiseSchedule
from dualdiff_ros.diffusion.training import TrainConfig, TrainingDiverged, fine_tune, train
from dualdiff_ros.model_store import ModelStore, save, train_specialized

HINT = "an observation may be absurd: list and forget it"
CONFIG = TrainConfig(steps=20, batch_size=16, lr=3e-3, lr_schedule="constant", progress=False)


def tiny(conditional: bool = True) -> DiffusionModel:
    """A cabinet-like model whose normalizers are fixed, as a specialization inherits its prior's."""
    torch.manual_seed(0)
    return DiffusionModel.create({"name": "mlp", "width": 32, "depth": 1}, NoiseSchedule("linear", 20),
                                 Normalizer([-1, -1, -1], [1, 1, 1]),
                                 Normalizer([-4, -4, 0], [6, 6, 3]) if conditional else None,
                                 {"domain": "cabinet", "role": "general"})


def data(n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.uniform([-4, -4, 0], [6, 6, 3], (n, 3)), rng.uniform(-0.5, 0.5, (n, 3))


def finite(model: DiffusionModel) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.denoiser.state_dict().values())


def test_normal_tiny_run_passes():
    model = tiny()
    conditions, targets = data()
    result = train(model, conditions, targets, CONFIG)
    assert result.steps == 20 and all(np.isfinite(result.losses)) and finite(model)
    tuned, result = fine_tune(model, conditions, targets, CONFIG, lora_rank=2)
    assert all(np.isfinite(result.losses)) and finite(tuned)


def test_one_target_of_1e300_is_a_clear_error():
    model = tiny()
    conditions, targets = data()
    targets[7, 1] = 1e300  # finite in float64, but not once normalized to float32
    with pytest.raises(ValueError, match=r"normalized targets\[7, 1\] is inf.*too large for float32") as err:
        train(model, conditions, targets, CONFIG)
    assert HINT in str(err.value)


def test_one_target_of_1e300_fails_a_fine_tune_and_saves_nothing(tmp_path):
    from nodes_support import tiny_recipe

    general = tiny()
    conditions, targets = data()
    targets[3, 0] = 1e300
    store = ModelStore(tmp_path)
    with pytest.raises((TrainingDiverged, ValueError), match="absurd"):
        model = train_specialized(general, conditions, targets, tiny_recipe(), "fine_tune", progress=False)
        save(model, store.specialized_path("cabinet"))
    assert not store.specialized_path("cabinet").exists()


@pytest.mark.parametrize("lora_rank", [0, 2])
def test_huge_target_diverges_with_step_epoch_and_loss(lora_rank):
    general = tiny()
    conditions, targets = data()
    targets[5, 2] = 1e30  # representable in float32, but its squared error is not
    with pytest.raises(TrainingDiverged) as err:
        fine_tune(general, conditions, targets, CONFIG, lora_rank=lora_rank)
    message = str(err.value)
    assert "loss is" in message and ("inf" in message or "nan" in message)
    assert "step " in message and "epoch " in message and HINT in message
    assert finite(general)  # the prior is untouched


@pytest.mark.parametrize("where, words", [
    ("targets", r"targets\[2, 0\] is nan"),
    ("conditions", r"conditions\[4, 1\] is inf"),
])
def test_non_finite_inputs_are_refused_before_training(where, words):
    model = tiny()
    conditions, targets = data()
    before = {k: v.clone() for k, v in model.denoiser.state_dict().items()}
    if where == "targets":
        targets[2, 0] = np.nan
    else:
        conditions[4, 1] = np.inf
    with pytest.raises(ValueError, match=words):
        train(model, conditions, targets, CONFIG)
    assert all(torch.equal(before[k], v) for k, v in model.denoiser.state_dict().items())
    assert "training" not in model.metadata


def test_non_finite_weights_at_the_end_fail_the_job(monkeypatch):
    def poisoned_ema(ema, net, decay):
        with torch.no_grad():
            next(ema.parameters()).fill_(float("nan"))

    monkeypatch.setattr(training, "_ema_update", poisoned_ema)
    model = tiny(conditional=False)
    _, targets = data()
    with pytest.raises(TrainingDiverged, match="not finite after 20 steps.*absurd"):
        train(model, None, targets, CONFIG)
    assert "training" not in model.metadata
