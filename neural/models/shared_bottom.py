"""Shared-Bottom (Caruana, 1997): hard parameter sharing.

One bottom MLP feeds a CTR tower and a CVR tower. Default loss: CTR on all rows, CVR on
clicked rows; `cvr_loss="entire_space"` trains CTR and CTCVR = pCTR x pCVR on all rows.
"""

from __future__ import annotations

from neural.layers import mlp
from neural.network import TwoTowerNet, two_tower_outputs


class SharedBottom(TwoTowerNet):
    OUTPUTS_HOW = two_tower_outputs("the shared bottom", "the shared bottom")

    def __init__(self, layout, config, priors, **options):  # TwoTowerNet's cvr_loss, ...
        super().__init__(layout, config, priors, **options)
        self.bottom = mlp(self.in_dim, config.mlp_dims, config.dropout)
        self.make_towers(config.mlp_dims[-1], priors)

    def score(self, x):
        shared = self.bottom(x)  # (B, d)
        return self.towers(shared, shared)
