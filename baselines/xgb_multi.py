"""A multi-task tree: one XGBoost forest whose leaves hold a vector (click, click-and-purchase).

XGBoost's `multi_strategy="multi_output_tree"` grows each tree once for both labels; every leaf
holds one value per label, so the two tasks share every split, as a shared-bottom network
shares its layers. Both labels are defined on every impression (ESMM's entire space), so the
forest trains on all train rows: pCTR and pCTCVR are its own outputs and
pCVR = min(1, pCTCVR / pCTR).

Budget: the trees' shared TreeBudget in XGBoost's names (baselines/xgb.py); early stopping on
the mean validation log loss of the two outputs. Features: the trees' encoding
(tree_features.py) with out-of-fold target encodings of both labels side by side, one
TreeFeatures per label (the label-free columns once). XGBoost has no categorical splits for
multi-output trees yet, so the low-cardinality profile codes are split on as ordered numbers.
"""

from __future__ import annotations

import numpy as np

import baselines.openmp  # noqa: F401  (before lightgbm/xgboost/sklearn load)
from baselines.tree_budget import TreeBudget
from baselines.tree_features import DEFAULT_ENCODING, TreeFeatures
from baselines.trees import INPUTS
from ccp.tasks import TASKS

LABELS = ("ctr", "ctcvr")  # the forest's two outputs, in order


class XgbMultiOutput:
    OUTPUTS_HOW = {"ctr": "own output 0 of the two-output forest (click, all impressions)",
                   "cvr": "min(1, pCTCVR / pCTR) of the forest's two outputs",
                   "ctcvr": "own output 1 of the two-output forest (click and purchase)"}
    CONSTANT_OUTPUTS = ()
    INPUTS = {**INPUTS, "ids": INPUTS["ids"].replace(
        "as categories", "as ordered codes (no categorical multi-output splits)")}

    def __init__(self, encoding: str = DEFAULT_ENCODING):
        self.encoding = encoding
        self.encoders: dict[str, TreeFeatures] = {}
        self.booster = None
        self.threads = 1
        self.info: dict = {}

    def _features(self, split, rows=None, oof=None) -> np.ndarray:
        """Columns of the click encoder, then the target columns of the other label's."""
        parts = []
        for k, task in enumerate(LABELS):
            encoder = self.encoders[task]
            X = (encoder.transform(split) if rows is None
                 else encoder.rows_features(split, rows, oof[task]))
            if k:
                X = X[:, [j for j, name in enumerate(encoder.names) if name.endswith("_te")]]
            parts.append(X)
        return np.ascontiguousarray(np.hstack(parts))

    def fit(self, data, ctx) -> None:
        import xgboost

        from baselines import xgb

        train, valid = data.train, data.valid
        rows = np.arange(len(train))
        labels = np.column_stack([TASKS[t].rows_and_labels(train)[1] for t in LABELS])
        oof = {}
        for j, task in enumerate(LABELS):
            self.encoders[task] = TreeFeatures(self.encoding, seed=ctx.seed)
            oof[task] = self.encoders[task].fit(train, rows, labels[:, j], data.vocab_sizes)
        budget = TreeBudget.from_profile(ctx.profile)
        params = {**xgb.params(budget, ctx.seed, ctx.threads), "eval_metric": "logloss",
                  "multi_strategy": "multi_output_tree"}
        dtrain = xgboost.DMatrix(self._features(train, rows, oof), label=labels,
                                 nthread=ctx.threads)
        valid_labels = np.column_stack([TASKS[t].rows_and_labels(valid)[1] for t in LABELS])
        dvalid = xgboost.DMatrix(self._features(valid), label=valid_labels, nthread=ctx.threads)
        booster = xgboost.train(params, dtrain, num_boost_round=budget.max_rounds,
                                evals=[(dvalid, "valid")],
                                early_stopping_rounds=budget.early_stopping, verbose_eval=False)
        self.booster = booster[: booster.best_iteration + 1]
        self.threads = ctx.threads
        self.info = {"library": "xgboost", "multi_strategy": "multi_output_tree",
                     "labels": ",".join(LABELS), "encoding": self.encoding,
                     "rounds": int(self.booster.num_boosted_rounds()),
                     "train_rows": int(len(rows)), "n_features": int(dtrain.num_col()),
                     "stopping_metric": "mean validation log loss of both outputs",
                     **budget.as_info(xgb.BUDGET_FIELDS)}

    def predict(self, split) -> dict[str, np.ndarray]:
        self.booster.set_param({"nthread": self.threads})
        out = np.asarray(self.booster.inplace_predict(self._features(split)), dtype=np.float64)
        p_ctr, p_ctcvr = out[:, 0], out[:, 1]
        return {"ctr": p_ctr, "cvr": np.minimum(1.0, p_ctcvr / np.maximum(p_ctr, 1e-12)),
                "ctcvr": p_ctcvr}

    def n_params(self) -> int | None:
        if self.booster is None:
            return None
        return int(sum(dump.count("\n") for dump in self.booster.get_dump()))
