"""neural/pruned.py: skipping the hidden units a request leaves at zero changes no score."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from neural.layers import ExpertBank, Tower, mlp  # noqa: E402
from neural.pruned import (  # noqa: E402
    PrunedExperts,
    PrunedMLP,
    count_active,
    pruned_copy,
    reorder,
)


def calibrate(network, score):
    out = count_active(network, score)
    reorder(network)
    return out


class _Net(nn.Module):
    """An expert bank, an mlp and a tower, as the registered networks combine them."""

    def __init__(self, in_dim=12, groups=1):
        super().__init__()
        self.experts = ExpertBank(in_dim, (32, 16, 8), n_groups=groups, per_group=3)
        self.bottom = mlp(in_dim, (24, 12, 6))
        self.tower = Tower(8, (10, 5))
        with torch.no_grad():  # half of the first units start dead on inputs near zero
            self.experts.first_bias[::2] = -1.0
            self.bottom[0].bias[::2] = -1.0

    def forward(self, x):
        experts = self.experts(x)  # (3 groups, B, 8)
        return self.tower(experts.sum(0)) + self.bottom(x if x.dim() == 2 else x[0]).sum(1)


def _macs(module, x) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(x)
    return counter.get_total_flops() // 2


def test_a_pruned_copy_scores_as_the_network_on_rows_calibration_never_saw():
    torch.manual_seed(0)
    net = _Net().eval()
    pruned = pruned_copy(net)
    kinds = {type(m) for m in pruned.modules()}
    assert PrunedExperts in kinds and PrunedMLP in kinds  # the tower's body too
    quiet = 0.05 * torch.randn(300, 12)  # calibration: many units never active
    loud = 3.0 * torch.randn(500, 12)  # scored: units calibration saw dead become active
    with torch.inference_mode():
        out = calibrate(pruned, lambda: pruned(quiet))
        assert torch.allclose(out, net(quiet), atol=1e-6)  # the calibration run itself
        banks = [m for m in pruned.modules() if isinstance(m, PrunedExperts)]
        assert any(live < 32 for live in banks[0].live[0])  # something to skip
        # Units after the calibrated ones that are active now: the second product adds them.
        tail = banks[0].live[0][0]
        hidden = torch.relu(loud @ banks[0].bank.first_weight.flatten(1)
                            + banks[0].bank.first_bias)[:, :32]
        assert bool((hidden[:, tail:] > 0).any())
        assert torch.allclose(pruned(loud), net(loud), atol=1e-5)
        assert torch.allclose(pruned(quiet), net(quiet), atol=1e-6)


def test_pruning_does_fewer_multiply_adds_where_units_are_zero():
    torch.manual_seed(1)
    net = _Net(groups=3).eval()
    pruned = pruned_copy(net)
    quiet = 0.05 * torch.randn(300, 3, 12).transpose(0, 1)  # (groups, B, in): PLE's deeper levels
    with torch.inference_mode():
        calibrate(pruned, lambda: pruned(quiet))
        assert torch.allclose(pruned(quiet), net(quiet), atol=1e-6)
    assert _macs(pruned, quiet) < _macs(net, quiet)


def test_a_nan_unit_is_not_skipped():
    torch.manual_seed(2)
    net = _Net().eval()
    pruned = pruned_copy(net)
    x = 0.05 * torch.randn(300, 12)
    with torch.inference_mode():
        calibrate(pruned, lambda: pruned(x))
        bad = x.clone()
        bad[7, 3] = float("nan")
        assert torch.isnan(pruned(bad)[7]) and torch.isnan(net(bad)[7])


def test_the_fitted_network_is_left_as_it_was():
    torch.manual_seed(3)
    net = _Net().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    pruned = pruned_copy(net)
    with torch.inference_mode():
        calibrate(pruned, lambda: pruned(torch.randn(300, 12)))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not any(isinstance(m, (PrunedMLP, PrunedExperts)) for m in net.modules())


def test_small_requests_run_the_plain_forward():
    from neural.pruned import PRUNE_ROWS

    torch.manual_seed(4)
    net = _Net().eval()
    pruned = pruned_copy(net)
    with torch.inference_mode():
        calibrate(pruned, lambda: pruned(0.05 * torch.randn(300, 12)))
    small, large = 0.05 * torch.randn(PRUNE_ROWS - 1, 12), 0.05 * torch.randn(PRUNE_ROWS, 12)
    assert _macs(pruned, small) == _macs(net, small)
    assert _macs(pruned, large) < _macs(net, large)
    with torch.inference_mode():
        assert torch.allclose(pruned(small), net(small), atol=1e-6)
