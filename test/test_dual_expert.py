"""The DualDiff gated denoiser: shapes, a gate in [0, 1], and the sign of the diversity loss."""
import copy

import pytest
import torch

from dualdiff_ros.diffusion.denoisers import build_denoiser, count_parameters


def _inputs(n=32, scale=1.0):
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(n, 2, generator=gen) * scale
    return y, torch.randint(0, 100, (n,), generator=gen), torch.zeros(n, 0)


def test_shapes_and_parameter_count():
    net = build_denoiser("dual_expert", 2, 0)
    assert net(*_inputs()).shape == (32, 2)
    assert net.last_gate.shape == (32, 1)
    ratio = count_parameters(net) / count_parameters(build_denoiser("resmlp", 2, 0))
    assert 2.5 < ratio < 2.8  # "about 2.7x the baseline"


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_gate_stays_in_unit_interval(scale):
    torch.manual_seed(0)
    net = build_denoiser("dual_expert", 2, 0)
    net(*_inputs(256, scale))
    assert torch.all(net.last_gate >= 0) and torch.all(net.last_gate <= 1)


def test_output_is_the_gated_mix_of_the_experts():
    net = build_denoiser("dual_expert", 2, 0)
    y, t, c = _inputs()
    eps = net(y, t, c)
    h = net.embed(y, t, c)
    g = net.gate(h)
    torch.testing.assert_close(eps, g * net.expert1(h) + (1 - g) * net.expert2(h))


def test_diversity_loss_is_negative_and_rewards_spread():
    net = build_denoiser("dual_expert", 2, 0, diversity_weight=0.1)
    net(*_inputs())
    loss = net.auxiliary_loss()
    assert loss.item() < 0 and loss.requires_grad  # it is a training term, not a metric
    # The loss is -weight * mean pairwise distance: spreading the predictions lowers it.
    tight = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    net._last_eps = tight
    tight_loss = net.auxiliary_loss().item()
    net._last_eps = tight * 3
    spread_loss = net.auxiliary_loss().item()
    assert spread_loss == pytest.approx(3 * tight_loss) and spread_loss < tight_loss < 0


def test_copyable_after_a_training_forward():
    # The EMA copy, DiffusionModel.clone and fine-tuning deepcopy the denoiser after training.
    net = build_denoiser("dual_expert", 2, 0, diversity_weight=0.1)
    (net(*_inputs()).square().mean() + net.auxiliary_loss()).backward()  # one step of training.train
    copy.deepcopy(net)
    assert net.auxiliary_loss().item() == 0.0  # each forward's predictions count once


def test_zero_weight_adds_nothing_and_negative_weight_is_refused():
    net = build_denoiser("dual_expert", 2, 0)
    net(*_inputs())
    assert net.auxiliary_loss().item() == 0.0
    with pytest.raises(ValueError, match="diversity_weight"):
        build_denoiser("dual_expert", 2, 0, diversity_weight=-0.1)
