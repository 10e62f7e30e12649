"""The GBDT libraries the tree models train with: one line each, naming its adapter module.

Adding a library is one adapter file and one line in LIBRARIES; the tree models
(baselines.trees, registered as `<short>_<mode>`), the compiled predict path, the Dask engine
and `python -m bench gbdt` read the adapter. An adapter module provides:

    BUDGET_FIELDS                     the TreeBudget fields the library receives (recorded)
    params(budget, seed, threads)     the budget in the library's parameter names
    train(X, y, X_valid, y_valid, categorical, names, budget, seed, threads, on_round=None)
                                      a booster cut at its best validation round
    predict(booster, X, threads)      P(y = 1) per row
    n_rounds(booster), n_nodes(booster)
and, optionally (without them that path refuses the library by name):
    lleaves_model_text(booster, categorical), FLOAT32_INPUTS
                                      the forest in LightGBM's text format for lleaves
                                      (baselines/compiled.py), and whether the library compares
                                      float32-rounded inputs
    dask_train(client, arrays, valid_on_client, encoder, budget, seed, threads)
                                      (booster, info) trained on a Dask cluster
                                      (bench/distributed/dask_gbdt.py)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class TreeLibrary:
    name: str  # the tree models' `library` parameter, as records and `--libraries` spell it
    short: str  # the prefix of its registered models' names
    adapter: str  # import path of the adapter module, imported only when a model uses it


LIBRARIES = (
    TreeLibrary("lightgbm", "lgbm", "baselines.lgbm"),
    TreeLibrary("xgboost", "xgb", "baselines.xgb"),
)


def names() -> tuple[str, ...]:
    return tuple(library.name for library in LIBRARIES)


def adapter(name: str):
    """The adapter module of the library called `name`."""
    for library in LIBRARIES:
        if library.name == name:
            return importlib.import_module(library.adapter)
    raise ValueError(f"unknown tree library {name!r}; known: {sorted(names())}")
