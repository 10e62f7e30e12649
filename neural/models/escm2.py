"""ESCM2 (Wang et al., SIGIR 2022): ESMM plus a counterfactual CVR regulariser.

ESMM's CVR tower is unbiased only through the product pCTR x pCVR; ESCM2 adds a CVR risk over
the entire impression space, estimated from the clicked rows:
- IPW: sum over clicked rows of BCE(purchase, pCVR) / pCTR, divided by all rows (pCTR is the
  propensity; detached so the regulariser does not push the CTR tower; clipped at
  `min_propensity` to bound the variance).
- DR: an imputed error e^ covers every row and the clicked rows correct it by
  (e - e^) / pCTR; an imputation tower is fitted to the clicked rows' errors by
  (e - e^)^2 / pCTR. A departure from the paper, whose imputation tower outputs e^ itself:
  here it outputs a soft conversion r~ in (0, 1) and e^ = BCE of pCVR against the target
  r~, so e^ is never below the entropy of r~ and is tied to the CVR tower's prediction.
Total loss: CTR + CTCVR (as ESMM) + `counterfactual_weight` x regulariser.
"""

from __future__ import annotations

import torch.nn.functional as F

from neural.layers import Tower
from neural.network import RankingNet, clicked_then_product, from_logits


class ESCM2(RankingNet):
    N_LOSS_TERMS = 3  # CTR, CTCVR, counterfactual CVR risk
    OUTPUTS_HOW = {"ctr": "sigmoid of the CTR tower",
                   "cvr": "sigmoid of the CVR tower",
                   "ctcvr": "pCTR x pCVR"}

    def __init__(self, layout, config, priors, estimator: str = "ipw",
                 counterfactual_weight: float = 1.0, min_propensity: float = 0.01):
        super().__init__(layout, config, priors)
        if estimator not in ("ipw", "dr"):
            raise ValueError(f"estimator must be 'ipw' or 'dr', got {estimator!r}")
        self.estimator = estimator
        self.counterfactual_weight = counterfactual_weight
        self.min_propensity = min_propensity
        dims = config.mlp_dims + config.tower_dims
        self.ctr_tower = Tower(self.in_dim, dims, config.dropout, priors["ctr"])
        self.cvr_tower = Tower(self.in_dim, dims, config.dropout, priors["cvr"])
        self.imputation_tower = Tower(self.in_dim, dims, config.dropout, priors["cvr"]) \
            if estimator == "dr" else None
        self.loss_how = (f"CTR + CTCVR = pCTR x pCVR (all rows) + {counterfactual_weight} x "
                         f"{estimator.upper()} CVR risk over all rows")
        if estimator == "dr":
            self.loss_how += (" (imputed error = BCE(pCVR, imputed soft conversion), not the "
                              "paper's directly predicted error)")

    def score(self, x):
        logits = {"ctr": self.ctr_tower(x), "cvr": self.cvr_tower(x)}
        if self.imputation_tower is not None:
            logits["imputed"] = self.imputation_tower(x)
        out = from_logits(**logits)
        out["ctcvr"] = out["ctr"] * out["cvr"]
        return out

    def loss_terms(self, out, batch):
        terms = clicked_then_product(out, batch, "entire_space")
        propensity = out["ctr"].detach().clamp(min=self.min_propensity)
        clicked = batch.click
        error = F.binary_cross_entropy_with_logits(out["cvr_logit"], batch.purchase,
                                                   reduction="none")  # meaningful if clicked
        if self.estimator == "ipw":
            risk = (clicked * error / propensity).mean()
        else:
            imputed = out["imputed"]
            imputed_error = F.binary_cross_entropy_with_logits(
                out["cvr_logit"], imputed.detach(), reduction="none")  # (B,), all rows
            risk = (imputed_error + clicked * (error - imputed_error) / propensity).mean()
            # The imputation tower learns to predict the clicked rows' errors.
            fitted_error = F.binary_cross_entropy_with_logits(
                out["cvr_logit"].detach(), imputed, reduction="none")
            risk = risk + (clicked * (error.detach() - fitted_error) ** 2 / propensity).mean()
        return {**terms, "counterfactual": self.counterfactual_weight * risk}
