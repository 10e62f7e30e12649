"""Building blocks shared by the models: MLPs, task towers, and a fused bank of experts."""

from __future__ import annotations

import math

import torch
from torch import nn


def mlp(in_dim: int, dims: tuple[int, ...], dropout: float = 0.0) -> nn.Sequential:
    """Linear + ReLU (+ dropout) per hidden size; an empty `dims` is the identity."""
    layers: list[nn.Module] = []
    for out_dim in dims:
        layers += [nn.Linear(in_dim, out_dim), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_dim = out_dim
    return nn.Sequential(*layers)


class Tower(nn.Module):
    """A task head: an MLP then one logit per row."""

    def __init__(self, in_dim: int, dims: tuple[int, ...], dropout: float = 0.0,
                 prior: float | None = None):
        super().__init__()
        self.body = mlp(in_dim, dims, dropout)
        self.logit = nn.Linear(dims[-1] if dims else in_dim, 1)
        if prior is not None:
            # Start at the task's base rate: the first epochs learn ranking, not the mean.
            prior = min(max(prior, 1e-6), 1 - 1e-6)
            nn.init.constant_(self.logit.bias, math.log(prior / (1 - prior)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.body(x)
        if torch.is_autocast_enabled("cpu"):
            # Reduced-precision serving (neural/serving.py, bf16): the logit stays float32, as
            # a bfloat16 logit has 8 bits of mantissa and many candidates' scores would tie.
            with torch.autocast("cpu", enabled=False):
                return self.logit(hidden.float()).squeeze(-1)
        return self.logit(hidden).squeeze(-1)  # (B,)


def _uniform_(tensor: torch.Tensor, fan_in: int) -> None:
    # nn.Linear's default initialisation, so fused experts start like separate ones.
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(tensor, -bound, bound)


class ExpertBank(nn.Module):
    """`n_groups` x `per_group` expert MLPs of equal sizes, computed with few large GEMMs.

    Experts of one group read the same input. With one shared input (B, in) the first layers
    of all experts are one GEMM; with an input per group (G, B, in) they are one bmm. Deeper
    layers are one bmm over all experts. Returns (n_experts, B, dims[-1]), group-major.
    """

    def __init__(self, in_dim: int, dims: tuple[int, ...], n_groups: int, per_group: int,
                 dropout: float = 0.0):
        super().__init__()
        if not dims:
            raise ValueError("an expert needs at least one layer")
        self.n_groups, self.per_group, self.dims = n_groups, per_group, dims
        self.n_experts = n_groups * per_group
        # First layer, (in, groups, per_group * h1): a view of (in, all experts' h1) for one GEMM.
        self.first_weight = nn.Parameter(torch.empty(in_dim, n_groups, per_group * dims[0]))
        self.first_bias = nn.Parameter(torch.empty(n_groups * per_group * dims[0]))
        _uniform_(self.first_weight, in_dim)
        _uniform_(self.first_bias, in_dim)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            weight = nn.Parameter(torch.empty(self.n_experts, d_in, d_out))
            bias = nn.Parameter(torch.empty(self.n_experts, 1, d_out))
            _uniform_(weight, d_in)
            _uniform_(bias, d_in)
            self.weights.append(weight)
            self.biases.append(bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = self.dims[0]
        if x.dim() == 2:  # one input for every group
            batch = x.shape[0]
            hidden = torch.addmm(self.first_bias, x, self.first_weight.flatten(1))
        else:  # (G, B, in): one input per group
            batch = x.shape[1]
            hidden = torch.bmm(x, self.first_weight.transpose(0, 1))  # (G, B, per_group * h1)
            hidden = hidden.transpose(0, 1).reshape(batch, -1) + self.first_bias
        # (B, n_experts * h1) -> (n_experts, B, h1)
        hidden = self.dropout(torch.relu(hidden)).view(batch, self.n_experts, h1).transpose(0, 1)
        for weight, bias in zip(self.weights, self.biases):
            hidden = self.dropout(torch.relu(torch.baddbmm(bias, hidden, weight)))
        return hidden  # (n_experts, B, dims[-1])


def mix(gate_logits: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Softmax-gated sum of experts: gates (B, n), experts (n, B, d) -> (B, d)."""
    gates = torch.softmax(gate_logits, dim=-1)
    if torch.onnx.is_in_onnx_export():
        # The same sum, one expert at a time: ONNX Runtime's Einsum (or ReduceSum over the
        # experts) took 0.4 ms per gate of an 8 ms MMoE request; with these Mul/Add the whole
        # run went from 8.1 to 7.2 ms (measured, 1,000 candidates, 1 thread).
        mixed = gates[:, :1] * experts[0]
        for i in range(1, len(experts)):
            mixed = mixed + gates[:, i:i + 1] * experts[i]
        return mixed
    return torch.einsum("bn,nbd->bd", gates, experts)
