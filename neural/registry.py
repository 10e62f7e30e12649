"""PyTorch multi-task models. Names are `neural/<name>`; torch is imported only when built.

Every model is `neural.trainer:NeuralRanker` around one network class (neural/models/*.py);
variants are the same class with other parameters, not copies. `dnn_ctr_x_cvr` is two of the
registered models fitted apart (neural/models/dnn_ctr_x_cvr.py).
"""

from bench.registry import ModelSpec

RANKER = "neural.trainer:NeuralRanker"


def _spec(name: str, network: str, description: str, **params) -> ModelSpec:
    return ModelSpec(name, "neural", RANKER, description,
                     params={"network": f"neural.models.{network}", **params})


SPECS: list[ModelSpec] = [
    _spec("dnn_ctr", "dnn:DnnCtr", "single-task MLP on click, all rows"),
    _spec("dnn_cvr", "dnn:DnnCvr", "single-task MLP on purchase, clicked rows only"),
    _spec("dnn_ctcvr", "dnn:DnnCtcvr", "single-task MLP on click-and-purchase, all rows"),
    ModelSpec("dnn_ctr_x_cvr", "neural", "neural.models.dnn_ctr_x_cvr:DnnCtrXCvr",
              "dnn_ctr and dnn_cvr trained apart, pCTCVR = pCTR x pCVR (ESMM's BASE)"),
    _spec("weighted_loss", "weighted_loss:WeightedLoss",
          "one score, click BCE with converting clicks up-weighted (YouTube-style)"),
    _spec("shared_bottom", "shared_bottom:SharedBottom",
          "hard sharing: one bottom MLP, CTR and CVR towers (CVR on clicked rows)"),
    _spec("esmm", "esmm:ESMM", "ESMM: CTR and CTCVR = pCTR x pCVR losses on all rows"),
    _spec("mmoe", "mmoe:MMoE", "MMoE: shared experts, a gate per task (CVR on clicked rows)"),
    _spec("mmoe_es", "mmoe:MMoE", "MMoE with ESMM's entire-space loss (CTR + pCTR x pCVR)",
          cvr_loss="entire_space"),
    _spec("ple", "ple:PLE", "PLE: 2 levels of task and shared experts (CVR on clicked rows)"),
    _spec("ple_es", "ple:PLE", "PLE with ESMM's entire-space loss (CTR + pCTR x pCVR)",
          cvr_loss="entire_space"),
    _spec("aitm", "aitm:AITM", "AITM: click-to-conversion attention transfer + calibrator"),
    _spec("escm2_ipw", "escm2:ESCM2", "ESCM2: ESMM + inverse-propensity CVR regulariser",
          estimator="ipw"),
    _spec("escm2_dr", "escm2:ESCM2",
          "ESCM2: ESMM + doubly robust CVR regulariser (imputed soft conversion, DR-JL style)",
          estimator="dr"),
]
