"""LightGBM for one binary task: the shared TreeBudget in LightGBM's parameter names.

Imported only when a LightGBM model is built, so listing models never imports lightgbm.
"""

from __future__ import annotations

import numpy as np

import baselines.openmp  # noqa: F401  (before lightgbm/xgboost/sklearn load)
from baselines.tree_budget import TreeBudget

# The TreeBudget fields LightGBM receives (params below, or train's rounds and stopping);
# the validation metric is recorded per task, as it may change (baselines/trees.py).
BUDGET_FIELDS = ("max_rounds", "early_stopping", "learning_rate", "num_leaves", "max_bin",
                 "feature_fraction", "bagging_fraction", "bagging_freq", "lambda_l2",
                 "min_hessian", "min_data_in_leaf")


def params(budget: TreeBudget, seed: int, threads: int) -> dict:
    return {
        "objective": "binary",
        "metric": "auc" if budget.stopping_metric == "auc" else "binary_logloss",
        "learning_rate": budget.learning_rate, "num_leaves": budget.num_leaves,
        "max_depth": -1, "max_bin": budget.max_bin,
        "feature_fraction": budget.feature_fraction,
        "bagging_fraction": budget.bagging_fraction, "bagging_freq": budget.bagging_freq,
        "lambda_l2": budget.lambda_l2, "min_sum_hessian_in_leaf": budget.min_hessian,
        "min_data_in_leaf": budget.min_data_in_leaf,
        # Same seed and threads -> same trees.
        "seed": seed, "deterministic": True, "force_col_wise": True,
        "num_threads": threads, "verbosity": -1,
    }


def train(X, y, X_valid, y_valid, categorical: list[int], names: list[str],
          budget: TreeBudget, seed: int, threads: int, on_round=None):
    """A Booster holding only the trees up to the best validation iteration.

    on_round(round, score): called after each round with the validation metric, higher =
    better (log loss negated); it may raise to end training (tuning's pruner)."""
    import lightgbm

    train_set = lightgbm.Dataset(_source(X), label=y, feature_name=names,
                                 categorical_feature=categorical, free_raw_data=True)
    valid_sets, callbacks = [], []
    if X_valid is not None and len(X_valid):
        valid_sets = [lightgbm.Dataset(_source(X_valid), label=y_valid, reference=train_set)]
        callbacks = [lightgbm.early_stopping(budget.early_stopping, verbose=False)]
        if on_round is not None:
            callbacks.append(lambda env: _report(env, on_round))
    booster = lightgbm.train(params(budget, seed, threads), train_set,
                             num_boost_round=budget.max_rounds, valid_sets=valid_sets,
                             callbacks=callbacks)
    best = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    # Drop the trees grown after the best iteration, so every predict path sees the same model.
    return lightgbm.Booster(model_str=booster.model_to_string(num_iteration=best))


def _source(X):
    """A matrix as it is; ChunkedFeatures (baselines/tree_input.py) as a lightgbm.Sequence."""
    from baselines.tree_input import ChunkedFeatures

    if not isinstance(X, ChunkedFeatures):
        return X
    import lightgbm

    class Rows(lightgbm.Sequence):
        batch_size = X.chunk_rows  # LightGBM asks for these slices: one chunk each

        def __getitem__(self, index):
            if isinstance(index, slice):
                start, stop, _ = index.indices(len(X))
                k = start // X.chunk_rows
                first = k * X.chunk_rows
                return X.chunk(k)[start - first: stop - first]
            return X.row(index)

        def __len__(self):
            return len(X)

    return Rows()


def _report(env, on_round) -> None:
    _, _, value, higher_is_better = env.evaluation_result_list[0]
    on_round(env.iteration + 1, value if higher_is_better else -value)


def predict(booster, X: np.ndarray, threads: int = 1) -> np.ndarray:
    return booster.predict(X, num_threads=threads)


def n_rounds(booster) -> int:
    return booster.num_trees()


def n_nodes(booster) -> int:
    """Splits plus leaves over all trees: the tree counterpart of a parameter count."""
    trees = booster.dump_model()["tree_info"]
    return int(sum(2 * t["num_leaves"] - 1 for t in trees))
