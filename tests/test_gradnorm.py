"""GradNorm (neural/gradnorm.py): what it must do, on constructed cases and on every
multi-task network of the zoo."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from test_neural import NETWORKS, batch_of, build, random_split  # noqa: E402
from torch import nn  # noqa: E402

from neural import balancing  # noqa: E402
from neural.gradnorm import GradNorm  # noqa: E402


def test_the_weight_of_the_slower_task_is_pushed_up():
    balancer = GradNorm(2, alpha=1.5)
    norms = torch.tensor([1.0, 1.0])
    balancer.weight_gradient(torch.tensor([0.7, 0.7]), norms)  # the initial losses
    # Task 0's loss fell to half, task 1's only to 0.9 of its start: task 1 trains more slowly.
    gradient = balancer.weight_gradient(torch.tensor([0.35, 0.63]), norms)
    assert gradient[0] > 0 > gradient[1]  # a descent step lowers w_0 and raises w_1
    # Equal rates: the larger weighted norm is pushed down, the smaller up.
    gradient = balancer.weight_gradient(torch.tensor([0.35, 0.35]) * torch.tensor([1, 1.8]),
                                        torch.tensor([3.0, 1.0]))
    assert gradient[0] > 0 > gradient[1]


def distance_to_targets(balancer, losses, norms):
    ratio = losses / balancer.initial_losses
    target = (balancer.weights.detach() * norms).mean() * (ratio / ratio.mean()) ** balancer.alpha
    return float((balancer.weights.detach() * norms - target).abs().sum())


def test_weighted_norms_move_to_their_targets_and_weights_stay_positive_summing_to_n():
    balancer = GradNorm(3, alpha=1.5)
    initial = torch.tensor([0.7, 0.3, 0.05])
    balancer.weight_gradient(initial, torch.ones(3))
    losses, norms = initial * torch.tensor([0.5, 0.8, 1.0]), torch.tensor([2.0, 0.5, 0.1])
    optimizer = torch.optim.SGD(balancer.parameters(), lr=0.02)
    start = distance_to_targets(balancer, losses, norms)
    for _ in range(300):
        balancer.weights.grad = balancer.weight_gradient(losses, norms)
        optimizer.step()
        balancer.after_step()
        assert torch.all(balancer.weights > 0)
        assert torch.isclose(balancer.weights.sum(), torch.tensor(3.0))
    assert distance_to_targets(balancer, losses, norms) < 0.1 * start
    # Task 2 has the smallest gradient and the slowest loss: the largest weight.
    assert balancer.weights.argmax() == 2


class TwoTasks(nn.Module):
    """One shared linear layer, a head per task: the constructed two-task case."""

    def __init__(self, shared=True):
        super().__init__()
        self.shared = nn.Linear(8, 8)
        self.other = nn.Linear(8, 8) if not shared else None
        self.heads = nn.ModuleList(nn.Linear(8, 1) for _ in range(2))
        self.balancer = GradNorm(2, alpha=1.5)

    def forward(self, x):
        hidden = [torch.relu(self.shared(x)), torch.relu((self.other or self.shared)(x))]
        return {f"task{i}_logit": head(h).squeeze(-1)
                for i, (head, h) in enumerate(zip(self.heads, hidden))}


def test_a_task_whose_loss_falls_more_slowly_gets_more_weight():
    torch.manual_seed(0)
    model = TwoTasks()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(1)
    for _ in range(60):
        x = torch.randn(64, 8, generator=generator)
        easy = (x[:, 0] > 0).float()  # learnable: its loss falls
        coin = (torch.rand(64, generator=generator) < 0.5).float()  # noise: stays near ln 2
        out = model(x)
        terms = {"easy": F.binary_cross_entropy_with_logits(out["task0_logit"], easy),
                 "coin": F.binary_cross_entropy_with_logits(out["task1_logit"], coin)}
        optimizer.zero_grad()
        model.balancer.backward(terms, model, out)
        optimizer.step()
        model.balancer.after_step()
    weights = model.balancer.weights.detach()
    assert model.balancer.shared_parameter[0] is model.shared.weight
    assert weights[1] > 1.2 > 0.8 > weights[0] > 0
    assert torch.isclose(weights.sum(), torch.tensor(2.0))


def test_a_model_whose_tasks_share_no_layer_is_refused_with_its_name():
    model = TwoTasks(shared=False)
    x = torch.randn(4, 8)
    out = model(x)
    terms = {name: out[name].square().mean() for name in out}
    with pytest.raises(ValueError, match="loss_balancing=gradnorm needs a layer that every "
                                         "task's output and loss term reach; TwoTasks has none"):
        model.balancer.backward(terms, model, out)


MULTI_TASK = [s for s in NETWORKS if s.params["network"].endswith(
    tuple(f":{c}" for c in ("SharedBottom", "ESMM", "MMoE", "PLE", "AITM", "ESCM2")))
    and "loss_balancing" not in s.params]
# The last shared layer each family must get (a parameter's name, or the batch's table rows).
SHARED_LAYER = {"SharedBottom": "bottom.2.weight", "MMoE": "experts.weights.0",
                "PLE": "levels.1.shared_experts.weights.0", "AITM": "click_body.2.weight",
                "ESMM": "inputs.table", "ESCM2": "inputs.table"}


@pytest.mark.parametrize("gradients", ["dense", "rows"])
@pytest.mark.parametrize("spec", MULTI_TASK, ids=[s.name for s in MULTI_TASK])
def test_every_multi_task_network_trains_with_gradnorm(spec, gradients):
    train = random_split("train", 96, 12, np.random.default_rng(7))
    network = build(spec, loss_balancing="gradnorm", embedding_gradients=gradients)
    balancer = network.balancer
    batch = batch_of(train)
    if gradients == "rows":
        batch = batch.compact()
    balancing.backward(network, network(batch), batch)
    expected = SHARED_LAYER[spec.params["network"].split(":")[1]]
    if expected == "inputs.table" and gradients == "rows":
        assert balancer.shared_is_touched_rows
    else:
        names = {id(p): n for n, p in network.named_parameters()}
        assert names[id(balancer.shared_parameter[0])] == expected
    assert balancer.weights.grad is not None and torch.isfinite(balancer.weights.grad).all()
    assert balancer.weights.grad.abs().sum() > 0
    grads = [p.grad for p in network.parameters() if p is not network.inputs.table]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # The weights are not registered twice (the state dict and optimisers see each once).
    assert sum(1 for n, _ in network.named_parameters() if n.startswith("balancer")) == 1


def test_a_fitted_gradnorm_model_keeps_its_weights_positive_summing_to_two(tiny_data,
                                                                          tiny_profile):
    import dataclasses

    from bench.harness import fit_model
    from neural.registry import SPECS

    spec = next(s for s in SPECS if s.name == "mmoe_gradnorm")
    model, _ = fit_model(spec, dataclasses.replace(tiny_data, test=None), tiny_profile, seed=0,
                         threads=1, progress=False)
    weights = model.network.balancer.weights.detach()
    assert torch.all(weights > 0) and torch.isclose(weights.sum(), torch.tensor(2.0))
    assert not torch.equal(weights, torch.ones(2))  # they learned
    assert model.info["loss_balancing"] == "gradnorm"  # the record's model info says so
    recorded = [float(w) for w in model.info["loss_term_weights"].split(",")]
    assert recorded == pytest.approx(weights.tolist(), rel=1e-3)
