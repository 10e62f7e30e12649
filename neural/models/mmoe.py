"""MMoE (Ma et al., KDD 2018): experts shared by all tasks, one softmax gate per task.

Each task mixes the same experts with its own gate, so tasks share what helps both and
diverge where they conflict. Default loss: CTR on all rows, CVR on clicked rows; the
entire-space variant (registered as mmoe_es) trains CTR and CTCVR = pCTR x pCVR on all rows.
"""

from __future__ import annotations

from torch import nn

from neural.layers import ExpertBank, mix
from neural.network import TwoTowerNet, two_tower_outputs


class MMoE(TwoTowerNet):
    OUTPUTS_HOW = two_tower_outputs("the CTR gate's expert mix", "the CVR gate's expert mix")

    def __init__(self, layout, config, priors, **options):  # TwoTowerNet's cvr_loss, ...
        super().__init__(layout, config, priors, **options)
        self.n_experts = config.n_experts
        self.experts = ExpertBank(self.in_dim, config.mlp_dims, n_groups=1,
                                  per_group=config.n_experts, dropout=config.dropout)
        self.gates = nn.Linear(self.in_dim, 2 * config.n_experts)  # CTR gate | CVR gate
        self.make_towers(config.mlp_dims[-1], priors)

    def score(self, x):
        experts = self.experts(x)  # (n_experts, B, d)
        gate_logits = self.gates(x).view(len(x), 2, self.n_experts)  # (B, task, n_experts)
        ctr_in = mix(gate_logits[:, 0], experts)  # (B, d)
        cvr_in = mix(gate_logits[:, 1], experts)
        return self.towers(ctr_in, cvr_in)
