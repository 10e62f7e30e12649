"""Shared-Bottom (Caruana, 1997): hard parameter sharing.

One bottom MLP feeds a CTR tower and a CVR tower. Default loss: CTR on all rows, CVR on
clicked rows; `cvr_loss="entire_space"` trains CTR and CTCVR = pCTR x pCVR on all rows.
"""

from __future__ import annotations

from neural.layers import Tower, mlp
from neural.network import CVR_LOSS_HOW, RankingNet, clicked_then_product, from_logits


class SharedBottom(RankingNet):
    N_LOSS_TERMS = 2
    OUTPUTS_HOW = {"ctr": "sigmoid of the CTR tower on the shared bottom",
                   "cvr": "sigmoid of the CVR tower on the shared bottom",
                   "ctcvr": "pCTR x pCVR"}

    def __init__(self, layout, config, priors, cvr_loss: str = "clicked"):
        super().__init__(layout, config, priors)
        self.cvr_loss = cvr_loss
        self.loss_how = CVR_LOSS_HOW[cvr_loss]
        self.bottom = mlp(self.in_dim, config.mlp_dims, config.dropout)
        self.ctr_tower = Tower(config.mlp_dims[-1], config.tower_dims, config.dropout,
                               priors["ctr"])
        self.cvr_tower = Tower(config.mlp_dims[-1], config.tower_dims, config.dropout,
                               priors["cvr"])

    def score(self, x):
        shared = self.bottom(x)  # (B, d)
        out = from_logits(ctr=self.ctr_tower(shared), cvr=self.cvr_tower(shared))
        out["ctcvr"] = out["ctr"] * out["cvr"]
        return out

    def loss_terms(self, out, batch):
        return clicked_then_product(out, batch, self.cvr_loss)
