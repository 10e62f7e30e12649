"""Serving that skips the hidden ReLU units a request leaves at zero: exact, request by request.

A hidden unit whose ReLU output is zero on every candidate of a request adds nothing to the
next layer, so that layer's product may leave it out and the scores stay the same (only the
order of float additions changes). Fitted networks have many such units: in the reference
MMoE about 290 of the 1,024 expert units are zero on every candidate of a 1,000-candidate
request, 260 of them in each of 8 requests measured, so its expert bank's second layer (its
largest product once the first layer is projected, neural/projected.py) needs ~30% fewer
multiply-adds.

`pruned_copy(network)` returns a copy of a fitted network in which every MLP stack
(`neural.layers.mlp`, towers' bodies included) and every `ExpertBank` runs a serving forward
(`PrunedMLP`, `PrunedExperts`): after each hidden layer's ReLU (in place), the next product
reads the units counted active on earlier requests (a leading block of the layer: no copy)
and, in small extra products, any later unit this request activates (one reduction over those
units finds them): never an approximation. The order comes from `count_active`, which counts
over some requests how many rows activate each unit, and `reorder`, which then permutes every
layer's units by those counts (one layer's outputs and the next layer's inputs together: the
network's function is unchanged). Requests under PRUNE_ROWS candidates run the plain forward.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from neural.layers import ExpertBank

FEW = 8  # up to this many units beyond the calibrated ones are added one by one
# Smaller requests run the plain forward: there the per-expert products and the reductions
# cost more than the units they skip (reference MMoE on the gate's data, 100 candidates: the
# projected path went from 2.3 to 2.9 ms with pruning).
PRUNE_ROWS = 256


def _product(bias, hidden: torch.Tensor, weight: torch.Tensor, live: int | None, out=None):
    """bias + hidden @ weight over the units of `hidden` (B, H, after ReLU) that are nonzero
    on some row: the first `live` (in calibrated order) and any later one this request
    activates, added by a second, small product. `weight` is (H, out); `bias` may be None."""
    def addmm(h, w):
        if bias is None:
            return torch.mm(h, w, out=out)
        return torch.addmm(bias, h, w, out=out)

    if live is None or live >= hidden.shape[1]:
        return addmm(hidden, weight)
    result = addmm(hidden[:, :live], weight[:live])
    # NaN compares false: a NaN unit is kept, so the scores stay NaN as the plain forward's.
    extra = ((~(hidden[:, live:].amax(0) <= 0)).nonzero().squeeze(1) + live).tolist()
    if len(extra) > FEW:
        index = torch.tensor(extra)
        result.addmm_(hidden.index_select(1, index), weight.index_select(0, index))
    else:  # one rank-1 update each: no copy of the (strided) hidden columns
        for j in extra:
            result.addmm_(hidden[:, j:j + 1], weight[j:j + 1])
    return result


def _count(counts: torch.Tensor | None, hidden: torch.Tensor) -> torch.Tensor:
    active = (hidden > 0).sum(0)
    return active if counts is None else counts + active


def _is_mlp(module: nn.Module) -> bool:
    """A `neural.layers.mlp`: Linear, ReLU (, Dropout) per layer, nothing else."""
    if not isinstance(module, nn.Sequential) or len(module) == 0:
        return False
    kinds = [type(m) for m in module]
    linears = [i for i, kind in enumerate(kinds) if kind is nn.Linear]
    return (all(kind in (nn.Linear, nn.ReLU, nn.Dropout, nn.Identity) for kind in kinds)
            and all(i + 1 < len(kinds) and kinds[i + 1] is nn.ReLU for i in linears))


class PrunedMLP(nn.Module):
    """An mlp's forward that multiplies each layer after the first by its needed inputs only."""

    def __init__(self, stack: nn.Sequential):
        super().__init__()
        self.stack = stack  # the plain forward, for inputs that are not (B, in)
        self.linears = nn.ModuleList(m for m in stack if isinstance(m, nn.Linear))
        self.live: list[int | None] = [None] * (len(self.linears) - 1)
        self.counts: list | None = None  # per hidden layer, while calibrating

    def forward(self, x):
        if x.dim() != 2 or (len(x) < PRUNE_ROWS and self.counts is None):
            return self.stack(x)
        hidden = self.linears[0](x).relu_()  # a fresh tensor, or the projected path's own slice
        for i, linear in enumerate(self.linears[1:]):
            if self.counts is not None:
                self.counts[i] = _count(self.counts[i], hidden)
            hidden = _product(linear.bias, hidden, linear.weight.t(), self.live[i]).relu_()
        return hidden

    def reorder(self) -> None:
        """Put each hidden layer's units in order of their calibration counts."""
        with torch.no_grad():
            for i, counts in enumerate(self.counts):
                if counts is None:  # not reached on the calibration request
                    continue
                order = torch.argsort(counts, descending=True, stable=True)
                before, after = self.linears[i], self.linears[i + 1]
                before.weight.copy_(before.weight[order])
                if before.bias is not None:
                    before.bias.copy_(before.bias[order])
                after.weight.copy_(after.weight[:, order])
                self.live[i] = int((counts > 0).sum())
        self.counts = None


class PrunedExperts(nn.Module):
    """An `ExpertBank`'s forward with one product per expert and layer, each reading the
    expert's needed inputs only (the bank's own forward runs one batched product per layer)."""

    def __init__(self, bank: ExpertBank):
        super().__init__()
        self.bank = bank
        n_hidden = len(bank.weights)
        self.live: list[list[int | None]] = [[None] * bank.n_experts for _ in range(n_hidden)]
        self.counts: list | None = None

    def forward(self, x):
        bank = self.bank
        if (x.shape[0] if x.dim() == 2 else x.shape[1]) < PRUNE_ROWS and self.counts is None:
            return bank(x)
        h1, n = bank.dims[0], bank.n_experts
        if x.dim() == 2:  # a tensor, or a request input standing for one (neural/serving.py)
            hidden = torch.addmm(bank.first_bias, x, bank.first_weight.flatten(1))
        else:  # (G, B, in): one input per group, as ExpertBank.forward
            hidden = torch.bmm(x, bank.first_weight.transpose(0, 1))
            hidden = hidden.transpose(0, 1).reshape(x.shape[1], -1) + bank.first_bias
        hidden.relu_()
        batch = hidden.shape[0]
        experts = [hidden[:, e * h1:(e + 1) * h1] for e in range(n)]
        for layer, (weight, bias) in enumerate(zip(bank.weights, bank.biases)):
            out = hidden.new_empty(n, batch, weight.shape[2])
            for e, inputs in enumerate(experts):
                if self.counts is not None:
                    self.counts[layer][e] = _count(self.counts[layer][e], inputs)
                _product(bias[e], inputs, weight[e], self.live[layer][e], out=out[e])
            experts = list(out.relu_())
        if not bank.weights:
            return hidden.view(batch, n, h1).transpose(0, 1)
        return out  # (n_experts, B, dims[-1])

    def reorder(self) -> None:
        bank = self.bank
        h1 = bank.dims[0]
        with torch.no_grad():
            first_weight = bank.first_weight.view(bank.first_weight.shape[0], -1)
            for layer, per_expert in enumerate(self.counts):
                for e, counts in enumerate(per_expert):
                    if counts is None:
                        continue
                    order = torch.argsort(counts, descending=True, stable=True)
                    if layer == 0:  # the units are the first layer's outputs
                        cols = slice(e * h1, (e + 1) * h1)
                        first_weight[:, cols] = first_weight[:, cols][:, order]
                        bank.first_bias[cols] = bank.first_bias[cols][order]
                    else:
                        bank.weights[layer - 1][e] = bank.weights[layer - 1][e][:, order]
                        bank.biases[layer - 1][e] = bank.biases[layer - 1][e][:, order]
                    bank.weights[layer][e] = bank.weights[layer][e][order]
                    self.live[layer][e] = int((counts > 0).sum())
        self.counts = None


def _swap(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, ExpertBank):
            setattr(module, name, PrunedExperts(child))
        elif _is_mlp(child) and sum(isinstance(m, nn.Linear) for m in child) > 1:
            setattr(module, name, PrunedMLP(child))
        else:
            _swap(child)


def pruned_copy(network: nn.Module) -> nn.Module:
    """A copy of a fitted network whose mlps and expert banks skip units zero on a request."""
    pruned = copy.deepcopy(network).eval()
    _swap(pruned)
    return pruned


def pruned_modules(network: nn.Module) -> list:
    return [m for m in network.modules() if isinstance(m, (PrunedMLP, PrunedExperts))]


def count_active(network: nn.Module, score) -> object:
    """Run `score()` (a request through `network`, every unit multiplied) while each pruned
    module adds up how many rows activate each of its hidden units; returns its result.
    Counts add up over calls until `reorder`."""
    for module in pruned_modules(network):
        if module.counts is None:
            module.counts = ([None] * len(module.live) if isinstance(module, PrunedMLP) else
                             [[None] * len(per) for per in module.live])
    return score()


def reorder(network: nn.Module) -> None:
    """Order every pruned module's hidden units by the counts of `count_active`; from then on
    each product reads the units counted active first, and the rest only where a request
    activates them."""
    for module in pruned_modules(network):
        if module.counts is not None:
            module.reorder()
