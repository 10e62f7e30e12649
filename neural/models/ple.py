"""PLE (Tang et al., RecSys 2020): progressive layered extraction.

Each level (a CGC, customised gate control) has task-specific experts and shared experts.
Task t's gate mixes its own experts and the shared ones; below the last level a shared gate
mixes all experts into the next level's shared input. Default loss: CTR on all rows, CVR on
clicked rows; the entire-space variant (ple_es) trains CTR and CTCVR = pCTR x pCVR.
"""

from __future__ import annotations

import torch
from torch import nn

from neural.layers import ExpertBank, mix
from neural.network import TwoTowerNet, two_tower_outputs

N_TASKS = 2  # CTR, CVR


class CGC(nn.Module):
    """One extraction level: (task inputs, shared input) -> (task outputs, shared output)."""

    def __init__(self, in_dim, dims, n_task_experts, n_shared_experts, last, dropout):
        super().__init__()
        self.n_task, self.last = n_task_experts, last
        self.task_experts = ExpertBank(in_dim, dims, N_TASKS, n_task_experts, dropout)
        self.shared_experts = ExpertBank(in_dim, dims, 1, n_shared_experts, dropout)
        self.task_gates = nn.ModuleList(nn.Linear(in_dim, n_task_experts + n_shared_experts)
                                        for _ in range(N_TASKS))
        self.shared_gate = None if last else \
            nn.Linear(in_dim, N_TASKS * n_task_experts + n_shared_experts)

    def forward(self, task_in, shared_in):
        # task_in: (B, in) for the first level (all read the embeddings), else (task, B, in).
        task_experts = self.task_experts(task_in)  # (task * n_task, B, d)
        shared_experts = self.shared_experts(shared_in)  # (n_shared, B, d)
        task_out = []
        for t in range(N_TASKS):
            own = task_experts[t * self.n_task:(t + 1) * self.n_task]
            gate_in = task_in if task_in.dim() == 2 else task_in[t]
            task_out.append(mix(self.task_gates[t](gate_in),
                                torch.cat([own, shared_experts])))  # (B, d)
        shared_out = None if self.last else \
            mix(self.shared_gate(shared_in), torch.cat([task_experts, shared_experts]))
        return torch.stack(task_out), shared_out  # (task, B, d), (B, d)


class PLE(TwoTowerNet):
    OUTPUTS_HOW = two_tower_outputs("the last level's CTR output",
                                    "the last level's CVR output")

    def __init__(self, layout, config, priors, **options):  # TwoTowerNet's cvr_loss, ...
        super().__init__(layout, config, priors, **options)
        if config.ple_levels < 1:
            raise ValueError("PLE needs at least one level")
        dims = config.mlp_dims
        self.levels = nn.ModuleList(
            CGC(self.in_dim if level == 0 else dims[-1], dims, config.n_task_experts,
                config.n_shared_experts, last=level == config.ple_levels - 1,
                dropout=config.dropout)
            for level in range(config.ple_levels))
        self.make_towers(dims[-1], priors)

    def score(self, x):
        task_in, shared_in = x, x
        for level in self.levels:
            task_in, shared_in = level(task_in, shared_in)
        return self.towers(task_in[0], task_in[1])
