"""XGBoost for one binary task: the shared TreeBudget in XGBoost's parameter names.

Imported only when an XGBoost model is built, so listing models never imports xgboost.
"""

from __future__ import annotations

import numpy as np

import baselines.openmp  # noqa: F401  (before lightgbm/xgboost/sklearn load)
from baselines.tree_budget import TreeBudget

# The TreeBudget fields XGBoost receives: it has no minimum row count per leaf, and it samples
# rows (subsample = bagging_fraction) every round, so min_data_in_leaf and bagging_freq are
# never passed, nor recorded.
BUDGET_FIELDS = ("max_rounds", "early_stopping", "learning_rate", "num_leaves", "max_bin",
                 "feature_fraction", "bagging_fraction", "lambda_l2", "min_hessian")


def params(budget: TreeBudget, seed: int, threads: int) -> dict:
    return {
        "objective": "binary:logistic",
        "eval_metric": "auc" if budget.stopping_metric == "auc" else "logloss",
        "tree_method": "hist", "grow_policy": "lossguide",  # leaf-wise, like LightGBM
        "max_leaves": budget.num_leaves, "max_depth": 0, "eta": budget.learning_rate,
        "max_bin": budget.max_bin, "colsample_bytree": budget.feature_fraction,
        "subsample": budget.bagging_fraction, "reg_lambda": budget.lambda_l2,
        "min_child_weight": budget.min_hessian,
        "seed": seed, "nthread": threads, "verbosity": 0,
    }


def _matrix(X, y, categorical: list[int], names: list[str], threads: int, max_bin: int,
            ref=None):
    """A DMatrix of an array; a QuantileDMatrix built chunk by chunk from ChunkedFeatures
    (baselines/tree_input.py), whose bins follow `ref`'s for a validation matrix."""
    import xgboost

    from baselines.tree_input import ChunkedFeatures

    types = _feature_types(categorical, X.shape[1])
    if not isinstance(X, ChunkedFeatures):
        return xgboost.DMatrix(X, label=y, feature_names=names, feature_types=types,
                               enable_categorical=True, nthread=threads)

    class Chunks(xgboost.DataIter):
        def __init__(self):
            self.k = 0
            super().__init__()

        def next(self, input_data) -> bool:
            if self.k == len(X.bounds):
                return False
            start, stop = X.bounds[self.k]
            input_data(data=X.chunk(self.k), label=y[start:stop], feature_names=names,
                       feature_types=types)
            self.k += 1
            return True

        def reset(self) -> None:
            self.k = 0

    return xgboost.QuantileDMatrix(Chunks(), max_bin=max_bin, ref=ref, enable_categorical=True,
                                   nthread=threads)


def train(X, y, X_valid, y_valid, categorical: list[int], names: list[str],
          budget: TreeBudget, seed: int, threads: int, on_round=None):
    """A Booster holding only the trees up to the best validation iteration.

    on_round(round, score): called after each round with the validation metric, higher =
    better (log loss negated); it may raise to end training (tuning's pruner)."""
    import xgboost

    train_matrix = _matrix(X, y, categorical, names, threads, budget.max_bin)
    evals, stopping, callbacks = [], None, []
    if X_valid is not None and len(X_valid):
        ref = train_matrix if isinstance(train_matrix, xgboost.QuantileDMatrix) else None
        evals = [(_matrix(X_valid, y_valid, categorical, names, threads, budget.max_bin, ref),
                  "valid")]
        stopping = budget.early_stopping
        if on_round is not None:
            callbacks = [_reporter(on_round, higher_is_better=budget.stopping_metric == "auc")]
    booster = xgboost.train(params(budget, seed, threads), train_matrix,
                            num_boost_round=budget.max_rounds, evals=evals,
                            early_stopping_rounds=stopping, verbose_eval=False,
                            callbacks=callbacks)
    return _cut(booster, stopping)


def _cut(booster, stopping: int | None):
    """The booster up to its best round when training stopped early; predicting on 1 thread."""
    if stopping is not None:
        booster = booster[: booster.best_iteration + 1]
    booster.set_param({"nthread": 1})
    return booster


def _feature_types(categorical: list[int], n_features: int) -> list[str]:
    return ["c" if j in set(categorical) else "q" for j in range(n_features)]


def dask_train(client, arrays, valid_on_client, names: list[str], categorical: list[int],
               budget: TreeBudget, seed: int, threads: int):
    """(booster, info) trained with xgboost.dask on `arrays` {"train": (X, y), "valid": ...};
    xgboost.dask aggregates the validation metric over workers and stops early itself."""
    from xgboost import dask as xgb_dask

    types = _feature_types(categorical, len(names))

    def matrix(X, y):
        return xgb_dask.DaskDMatrix(client, X, y, feature_names=names, feature_types=types,
                                    enable_categorical=True)

    dtrain = matrix(*arrays["train"])
    evals, stopping = [], None
    if arrays["valid"][0].shape[0]:
        evals, stopping = [(matrix(*arrays["valid"]), "valid")], budget.early_stopping
    output = xgb_dask.train(client, params(budget, seed, threads), dtrain,
                            num_boost_round=budget.max_rounds, evals=evals,
                            early_stopping_rounds=stopping, verbose_eval=False)
    return _cut(output["booster"], stopping), {}


def _reporter(on_round, higher_is_better: bool):
    import xgboost

    class Report(xgboost.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log) -> bool:
            value = next(iter(evals_log["valid"].values()))[-1]
            on_round(epoch + 1, value if higher_is_better else -value)
            return False  # never stops training itself

    return Report()


def predict(booster, X: np.ndarray, threads: int = 1) -> np.ndarray:
    booster.set_param({"nthread": threads})
    # inplace_predict is XGBoost's own fast path for in-memory arrays (no DMatrix to build).
    return booster.inplace_predict(X)


FLOAT32_INPUTS = True  # XGBoost compares float32-rounded inputs with its thresholds


def lleaves_model_text(booster, categorical: list[int]) -> str:
    """The forest rewritten in LightGBM's text format for lleaves (baselines/compiled.py)."""
    from baselines.xgb_to_lightgbm import lightgbm_model_text

    return lightgbm_model_text(booster, categorical)


def n_rounds(booster) -> int:
    return booster.num_boosted_rounds()


def n_nodes(booster) -> int:
    """Splits plus leaves over all trees: the tree counterpart of a parameter count."""
    return int(sum(dump.count("\n") for dump in booster.get_dump()))
