"""ESMM (Ma et al., SIGIR 2018): entire-space multi-task model.

A CTR tower and a CVR tower over shared embeddings. The loss sees only CTR (click, all rows)
and CTCVR = pCTR x pCVR (click and purchase, all rows): the CVR tower is never fitted to
purchase labels directly, so it is trained on the whole impression space rather than on the
clicked rows only (no sample selection bias), and the scarce purchase signal is shared with
the CTR task through the embeddings.
"""

from __future__ import annotations

from neural.layers import Tower
from neural.network import RankingNet, clicked_then_product, from_logits


class ESMM(RankingNet):
    N_LOSS_TERMS = 2
    OUTPUTS_HOW = {"ctr": "sigmoid of the CTR tower",
                   "cvr": "sigmoid of the CVR tower (learned only through pCTR x pCVR)",
                   "ctcvr": "pCTR x pCVR"}

    def __init__(self, layout, config, priors):
        super().__init__(layout, config, priors)
        dims = config.mlp_dims + config.tower_dims  # the paper's towers read the embeddings
        self.ctr_tower = Tower(self.in_dim, dims, config.dropout, priors["ctr"])
        self.cvr_tower = Tower(self.in_dim, dims, config.dropout, priors["cvr"])
        self.loss_how = "CTR (click, all rows) + CTCVR = pCTR x pCVR (click and purchase, all rows)"

    def score(self, x):
        out = from_logits(ctr=self.ctr_tower(x), cvr=self.cvr_tower(x))
        out["ctcvr"] = out["ctr"] * out["cvr"]
        return out

    def loss_terms(self, out, batch):
        return clicked_then_product(out, batch, "entire_space")
