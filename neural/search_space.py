"""The declared search space every neural model shares (`python -m bench tune`).

Learning rates of the dense weights and of the embedding table, embedding size, L2 on the
dense weights, dropout, MLP width (the bottom, each expert, or the single-task trunk), batch
size, and whether the user x item cross ids are inputs (neural/crosses.py). A model's own
knobs (weighted loss's purchase weight, AITM's calibrator weight, ESCM²'s regulariser weight,
...) are declared on its spec in neural/registry.py. Epochs and
patience stay the profile's. The ranges hold each default (neural/config.py,
bench/profiles.py), which is always the study's first trial.

Imports no torch: listing spaces stays instant.
"""

from __future__ import annotations

from bench.search_space import Param

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


def space_for(spec) -> tuple[Param, ...]:
    return SHARED
