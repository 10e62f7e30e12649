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


FLOAT32_INPUTS = False  # lleaves scores LightGBM's own forests on the inputs as they are


def lleaves_model_text(booster, categorical: list[int]) -> str:
    """The forest in LightGBM's text format, which lleaves compiles (baselines/compiled.py)."""
    return booster.model_to_string()


def dask_train(client, arrays, valid_on_client, names: list[str], categorical: list[int],
               budget: TreeBudget, seed: int, threads: int):
    """(booster, info) trained with lightgbm.dask on `arrays` {"train": (X, y), ...}.

    lightgbm.dask cannot stop early (its validation metrics are per worker, and early stopping
    there hangs or stops on one worker's slice: LightGBM issues #6351, #6963), so it trains the
    full `max_rounds` and the forest is cut afterwards at the best round on the client, on every
    validation row (`valid_on_client()`), by lightgbm.early_stopping's rule."""
    import lightgbm

    X, y = arrays["train"]
    model = lightgbm.DaskLGBMClassifier(client=client, **_dask_params(budget, seed, threads))
    model.fit(X, y, feature_name=names, categorical_feature=categorical)
    booster = model.to_local().booster_
    X_valid, y_valid = valid_on_client()
    info = {"valid_rows": int(len(y_valid))}
    if len(y_valid) == 0:
        return booster, info
    best, _ = best_iteration(booster, X_valid, y_valid, budget.early_stopping)
    info["rounds_trained"] = booster.num_trees()
    return lightgbm.Booster(model_str=booster.model_to_string(num_iteration=best)), info


def _dask_params(budget: TreeBudget, seed: int, threads: int) -> dict:
    local = params(budget, seed, threads)
    for local_only in ("num_threads", "seed", "verbosity", "metric"):
        local.pop(local_only)
    # Threads: lightgbm.dask uses each worker's own thread count.
    return {**local, "n_estimators": budget.max_rounds, "random_state": seed, "verbose": -1}


def best_iteration(booster, X_valid, y_valid, patience: int) -> tuple[int, list]:
    """Best number of trees by lightgbm.early_stopping's rule, from per-tree raw scores."""
    from ccp.metrics import log_loss

    raw = np.zeros(len(y_valid))
    best, best_loss, losses = 0, np.inf, []
    for i in range(booster.num_trees()):
        raw += booster.predict(X_valid, raw_score=True, start_iteration=i, num_iteration=1)
        loss = log_loss(y_valid, 1.0 / (1.0 + np.exp(-raw)))
        losses.append(loss)
        if loss < best_loss:
            best, best_loss = i + 1, loss
        elif i + 1 - best >= patience:
            break
    return max(best, 1), losses


def n_rounds(booster) -> int:
    return booster.num_trees()


def n_nodes(booster) -> int:
    """Splits plus leaves over all trees: the tree counterpart of a parameter count."""
    trees = booster.dump_model()["tree_info"]
    return int(sum(2 * t["num_leaves"] - 1 for t in trees))
