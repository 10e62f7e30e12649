"""PyTorch multi-task models. Names are `neural/<name>`; torch is imported only when built.

Every model is `neural.trainer:NeuralRanker` around one network class (neural/models/*.py);
variants are the same class with other parameters, not copies. `dnn_ctr_x_cvr` is two of the
registered models fitted apart (neural/models/dnn_ctr_x_cvr.py).
"""

from ccp.model import ModelSpec
from ccp.search_space import Param

RANKER = "neural.trainer:NeuralRanker"


def _spec(name: str, network: str, description: str, search: tuple = (),
          **params) -> ModelSpec:
    return ModelSpec(name, "neural", RANKER, description, group="neural",
                     params={"network": f"neural.models.{network}", **params}, search=search)


# Each model's own knobs, tuned beside the shared space of neural/search_space.py.
PURCHASE_WEIGHT = Param("purchase_weight", "model",
                        choices=("balanced", 10.0, 30.0, 100.0, 300.0, 1000.0))
EXPERTS = Param("n_experts", "neural", choices=(2, 4, 8))
PLE_EXPERTS = (Param("n_shared_experts", "neural", choices=(1, 2, 3)),
               Param("n_task_experts", "neural", choices=(1, 2, 3)))
CALIBRATOR = Param("calibrator_weight", "model", 0.05, 5.0, log=True)
REGULARISER = Param("counterfactual_weight", "model", 0.01, 10.0, log=True)


SPECS: list[ModelSpec] = [
    _spec("dnn_ctr", "dnn:DnnCtr", "single-task MLP on click, all rows"),
    _spec("dnn_cvr", "dnn:DnnCvr", "single-task MLP on purchase, clicked rows only"),
    _spec("dnn_ctcvr", "dnn:DnnCtcvr", "single-task MLP on click-and-purchase, all rows"),
    ModelSpec("dnn_ctr_x_cvr", "neural", "neural.models.dnn_ctr_x_cvr:DnnCtrXCvr",
              "dnn_ctr and dnn_cvr trained apart, pCTCVR = pCTR x pCVR (ESMM's BASE)",
              group="neural"),
    _spec("weighted_loss", "weighted_loss:WeightedLoss",
          "one score, click BCE with converting clicks up-weighted (YouTube-style)",
          search=(PURCHASE_WEIGHT,)),
    _spec("shared_bottom", "shared_bottom:SharedBottom",
          "hard sharing: one bottom MLP, CTR and CVR towers (CVR on clicked rows)"),
    _spec("esmm", "esmm:ESMM", "ESMM: CTR and CTCVR = pCTR x pCVR losses on all rows"),
    _spec("mmoe", "mmoe:MMoE", "MMoE: shared experts, a gate per task (CVR on clicked rows)",
          search=(EXPERTS,)),
    _spec("mmoe_es", "mmoe:MMoE", "MMoE with ESMM's entire-space loss (CTR + pCTR x pCVR)",
          cvr_loss="entire_space", search=(EXPERTS,)),
    _spec("mmoe_uncertainty", "mmoe:MMoE", "MMoE, task losses weighted by learned "
          "uncertainty (Kendall et al. 2018)", loss_balancing="uncertainty", search=(EXPERTS,)),
    _spec("mmoe_gradnorm", "mmoe:MMoE", "MMoE, task weights learned by GradNorm (Chen et al. "
          "2018) at the experts' last layer", loss_balancing="gradnorm", search=(EXPERTS,)),
    _spec("mmoe_pcgrad", "mmoe:MMoE", "MMoE, conflicting task gradients projected (PCGrad, "
          "Yu et al. 2020)", loss_balancing="pcgrad", search=(EXPERTS,)),
    _spec("ple", "ple:PLE", "PLE: 2 levels of task and shared experts (CVR on clicked rows)",
          search=PLE_EXPERTS),
    _spec("ple_es", "ple:PLE", "PLE with ESMM's entire-space loss (CTR + pCTR x pCVR)",
          cvr_loss="entire_space", search=PLE_EXPERTS),
    _spec("aitm", "aitm:AITM", "AITM: click-to-conversion attention transfer + calibrator",
          search=(CALIBRATOR,)),
    _spec("escm2_ipw", "escm2:ESCM2", "ESCM2: ESMM + inverse-propensity CVR regulariser",
          estimator="ipw", search=(REGULARISER,)),
    _spec("escm2_dr", "escm2:ESCM2",
          "ESCM2: ESMM + doubly robust CVR regulariser (imputed soft conversion, DR-JL style)",
          estimator="dr", search=(REGULARISER,)),
]
