"""The declared search space every neural model shares (`python -m bench tune`).

Learning rates of the dense weights and of the embedding table, embedding size, L2 on the
dense weights, dropout, MLP width (the bottom, each expert, or the single-task trunk), batch
size, whether the user x item cross ids are inputs (neural/crosses.py), and a loss-balanced
model's balancer knob (fixed weights, GradNorm's alpha). A model's own knobs (weighted loss's
purchase weight, AITM's calibrator weight, ESCM²'s regulariser weight, ...) are declared on its
spec in neural/registry.py. Epochs and
patience stay the profile's. The ranges hold each default (neural/config.py,
ccp/profiles.py), which is always the study's first trial.

Imports no torch: listing spaces stays instant.
"""

from __future__ import annotations

from ccp.search_space import Param

SHARED = (
    Param("learning_rate", "neural", 1e-4, 1e-2, log=True),
    Param("embedding_learning_rate", "neural", 1e-4, 3e-2, log=True),
    Param("embedding_dim", "neural", choices=(8, 16, 32)),
    Param("weight_decay", "neural", choices=(0.0, 1e-6, 1e-5, 1e-4)),
    Param("dropout", "neural", 0.0, 0.5),
    Param("mlp_dims", "neural", choices=("128,64", "256,128", "512,256")),
    Param("neural_batch_size", "profile", choices=(512, 1024, 2048, 4096)),
    Param("cross_ids", "neural", choices=(True, False)),
)


# Knobs of a model trained with a loss balancer (neural/balancing.py), by its loss_balancing.
# Fixed weights: the CTR term's weight against the conversion-side terms' 1 ("": all 1; every
# multi-task model here has a "ctr" term; AITM's and ESCM2's extra terms have their own weight
# knobs). GradNorm: alpha from 0 (equal gradient norms) to 3, around the default 1.5.
BALANCING = {
    "fixed": (Param("loss_weights", "neural", choices=("", "ctr:0.3", "ctr:0.1", "ctr:3")),),
    "gradnorm": (Param("gradnorm_alpha", "neural", 0.0, 3.0),),
}


def space_for(spec) -> tuple[Param, ...]:
    return SHARED + BALANCING.get(spec.params.get("loss_balancing"), ())
