"""The linear floor: one logistic regression per task on one-hot codes and dense features.

Inputs: one column per (field, code) of the 18 single-valued fields, one per intention-node
code of the item's 210 list (multi-hot), and the 12 dense columns of `Split.dense`. Codes are
already bounded by the train vocabularies, so the one-hot layout is fixed by the data set and
nothing is hashed. The CTR and CTCVR models train on all impressions, the CVR model on clicked
impressions only; each output is the model's own estimate.
"""

from __future__ import annotations

import warnings

import numpy as np

import baselines.openmp  # noqa: F401  (before lightgbm/xgboost/sklearn load)
from ccp.data import schema
from ccp.tasks import MAIN_TASKS, TASKS


def one_hot(split, vocab_sizes: dict[str, int]):
    """Sparse (n, n_columns) matrix: one-hot single codes, multi-hot 210, dense values."""
    from scipy import sparse

    n = len(split)
    codes = split.single_codes()
    offsets = np.cumsum([0] + [vocab_sizes[f] for f in schema.SINGLE_FIELDS])
    rows = [np.repeat(np.arange(n), len(schema.SINGLE_FIELDS))]
    cols = [(np.minimum(codes, offsets[1:] - offsets[:-1] - 1) + offsets[:-1]).reshape(-1)]
    vals = [np.ones(n * len(schema.SINGLE_FIELDS))]
    nodes = split.item_multi["210"]
    rows.append(np.repeat(np.arange(n), nodes.lengths()))
    cols.append(offsets[-1] + np.minimum(nodes.codes, vocab_sizes["210"] - 1))
    vals.append(np.ones(len(nodes.codes)))
    dense_start = offsets[-1] + vocab_sizes["210"]
    n_dense = split.dense.shape[1]
    rows.append(np.repeat(np.arange(n), n_dense))
    cols.append(np.tile(np.arange(n_dense) + dense_start, n))
    vals.append(split.dense.reshape(-1).astype(np.float64))
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n, dense_start + n_dense))


class LogisticFloor:
    INPUTS = {"ids": "one-hot code of each of the 18 single-valued fields",
              "lists": "the item's intention nodes, multi-hot; no user list ids",
              "match": "combination ids one-hot, and their weights",
              "dense": "the 12 dense columns"}
    OUTPUTS_HOW = {"ctr": "own logistic regression (click, all impressions)",
                   "cvr": "own logistic regression (purchase, clicked impressions only)",
                   "ctcvr": "own logistic regression (click and purchase, all impressions)"}

    def __init__(self, C: float = 1.0):
        self.C = C
        self.models: dict[str, object] = {}
        self.rates: dict[str, float] = {}
        self.vocab_sizes: dict[str, int] = {}
        self.info: dict = {}

    def fit(self, data, ctx) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        self.vocab_sizes = dict(data.vocab_sizes)
        X = one_hot(data.train, self.vocab_sizes)
        self.info = {"C": self.C, "n_columns": int(X.shape[1]),
                     "max_iter": ctx.profile.linear_max_iter}
        for task in MAIN_TASKS:
            rows, labels = TASKS[task].rows_and_labels(data.train)
            self.rates[task] = float(labels.mean()) if len(labels) else 0.0
            if len(rows) < 2 or labels.min() == labels.max():
                self.models[task] = None  # one class only: predict its rate
                continue
            model = LogisticRegression(C=self.C, solver="lbfgs",
                                       max_iter=ctx.profile.linear_max_iter)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                model.fit(X[rows], labels)
            # Non-convergence is recorded in info, not printed; every other warning goes on.
            converged = True
            for warning in caught:
                if issubclass(warning.category, ConvergenceWarning):
                    converged = False
                else:
                    warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                           warning.lineno, source=warning.source)
            self.info[f"{task}_converged"] = converged
            self.models[task] = model
            self.info[f"{task}_iterations"] = int(model.n_iter_[0])

    def predict(self, split) -> dict[str, np.ndarray]:
        X = one_hot(split, self.vocab_sizes)
        return {task: (np.full(len(split), self.rates[task]) if model is None
                       else model.predict_proba(X)[:, 1])
                for task, model in self.models.items()}

    def n_params(self) -> int:
        return sum(m.coef_.size + 1 for m in self.models.values() if m is not None)
