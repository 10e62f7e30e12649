"""Gradient-boosted trees, LightGBM or XGBoost, for one task or the CTR x CVR decomposition.

The registered variants (baselines/registry.py) are parameters of this one class:

    mode       trains                                     own estimate of
    ctr        click on all impressions                   pCTR
    cvr        purchase on clicked impressions only       pCVR
    ctcvr      click-and-purchase on all impressions      pCTCVR
    ctr_x_cvr  the ctr and the cvr model above            pCTR, pCVR; pCTCVR = pCTR x pCVR

A model without its own estimate of a task composes it with the train prior of the missing
factor (OUTPUTS_HOW says which, per mode); a constant output ranks every row equally, so its
AUC is 0.5 by construction, and the model declares it in CONSTANT_OUTPUTS. A forest whose
train labels are all one class is not trained: it predicts their rate, and after fit the
outputs that depend only on it are declared constant too (CONSTANT_OUTPUTS, OUTPUTS_HOW and
info `<task>_constant_because_one_class`).

Serving: `features(split)` assembles each forest's input (table lookups), `score(features)`
scores it with the library's predict (the reference) or, with compiled=True, with the forests
compiled by lleaves (`compile()` first; baselines/compiled.py). `predict(split)` and
`predict_fast(split)` chain the two.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

import baselines.openmp  # noqa: F401  (before lightgbm/xgboost/sklearn load)
from baselines import tree_libraries
from baselines.tree_budget import TreeBudget
from baselines.tree_features import DEFAULT_ENCODING, TreeFeatures
from ccp.tasks import MAIN_TASKS, TASKS, priors_of

MODES = {"ctr": ("ctr",), "cvr": ("cvr",), "ctcvr": ("ctcvr",), "ctr_x_cvr": ("ctr", "cvr")}
OUTPUTS_HOW = {
    "ctr": {"ctr": "own model (click, all impressions)",
            "cvr": "train CVR prior (constant: no own estimate)",
            "ctcvr": "pCTR x train CVR prior"},
    "cvr": {"ctr": "train CTR prior (constant: no own estimate)",
            "cvr": "own model (purchase, clicked impressions only)",
            "ctcvr": "train CTR prior x pCVR (the clicked-only model applied to all rows)"},
    "ctcvr": {"ctr": "min(1, pCTCVR / train CVR prior): assumes a constant CVR",
              "cvr": "min(1, pCTCVR / train CTR prior): assumes a constant CTR",
              "ctcvr": "own model (click and purchase, all impressions)"},
    "ctr_x_cvr": {"ctr": "own CTR model (click, all impressions)",
                  "cvr": "own CVR model (purchase, clicked impressions only)",
                  "ctcvr": "pCTR x pCVR"},
}
# The own forests each output is computed from; an output from none of them is constant.
USES = {"ctr": {"ctr": ("ctr",), "cvr": (), "ctcvr": ("ctr",)},
        "cvr": {"ctr": (), "cvr": ("cvr",), "ctcvr": ("cvr",)},
        "ctcvr": {"ctr": ("ctcvr",), "cvr": ("ctcvr",), "ctcvr": ("ctcvr",)},
        "ctr_x_cvr": {"ctr": ("ctr",), "cvr": ("cvr",), "ctcvr": ("ctr", "cvr")}}
CONSTANT = {mode: tuple(out for out, forests in uses.items() if not forests)
            for mode, uses in USES.items()}
# What a forest sees (tree_features.py), in the columns of the report's inputs table.
INPUTS = {
    "ids": "user profile 121-129 and position 301 as categories; user 101, item "
                         "205, category 206, shop 207, brand 216 and the combination ids as "
                         "train counts and out-of-fold target encodings of the task's label",
    "lists": "each user list's mean weight and length; the item's first intention "
                       "node (encoded as above) and its node-list length; no list ids",
    "match": "combination ids 508/509/702/853 (encoded as above) and weights "
                              "(the user's behaviour weight on this item's category, shop, "
                              "brand, node); target-encoded user x category/shop/brand crosses",
    "dense": "the 12 dense columns (combination weights, list mean weights and lengths)",
}


class TreeModel:
    INPUTS = INPUTS

    def __init__(self, library: str = "lightgbm", mode: str = "ctr_x_cvr",
                 config: str = "default", encoding: str = DEFAULT_ENCODING):
        if library not in tree_libraries.names():
            raise ValueError(f"unknown tree library {library!r}; known: "
                             f"{sorted(tree_libraries.names())}")
        if mode not in MODES:
            raise ValueError(f"unknown tree mode {mode!r}; known: {sorted(MODES)}")
        self.library, self.mode, self.config = library, mode, config
        self.encoding = encoding or DEFAULT_ENCODING
        self.OUTPUTS_HOW = dict(OUTPUTS_HOW[mode])
        self.CONSTANT_OUTPUTS = CONSTANT[mode]
        self.encoders: dict[str, TreeFeatures] = {}
        self.boosters: dict[str, object] = {}  # None for a task whose train labels are constant
        self.compiled: dict[str, object] = {}
        self.priors: dict[str, float] = {}
        self.threads = 1
        self.info: dict = {}

    @property
    def lib(self):
        return tree_libraries.adapter(self.library)

    def fit(self, data, ctx) -> None:
        train = data.train
        self.priors = priors_of(train)
        self.threads = ctx.threads
        budget = TreeBudget.from_profile(ctx.profile, self.config)
        self.info = {"library": self.library, "mode": self.mode, "config": self.config,
                     "encoding": self.encoding,
                     "encoding_is_default": self.encoding == DEFAULT_ENCODING,
                     "encoding_default_why": "best mean validation AUC over ctr/cvr/ctcvr of "
                                             "the measured encodings: baselines/README.md",
                     # predict() (what the harness scores) uses the library's own predict;
                     # the compiled forests serve predict_fast and the latency runs.
                     "predict_path": "library", "compiled_path_available": "lleaves",
                     **budget.as_info(self.lib.BUDGET_FIELDS)}
        for task in MODES[self.mode]:
            self._fit_task(task, data, budget, ctx)
        self._declare_constant_outputs()

    def _declare_constant_outputs(self) -> None:
        """Declare every output that ranks all rows equally: not only the missing task's
        prior, but outputs of an untrained (one-class) forest, or times a train rate of 0."""
        untrained = {task for task, booster in self.boosters.items() if booster is None}
        for task in sorted(untrained):
            self.info[f"{task}_constant_because_one_class"] = True
        # Compose two rows that differ in every trained forest's prediction: an output equal
        # on both cannot depend on any trained forest.
        probe = self._compose({task: np.full(2, self.priors[task]) if task in untrained
                               else np.array([0.0, 1e-9]) for task in self.boosters})
        self.OUTPUTS_HOW = dict(OUTPUTS_HOW[self.mode])
        constant = tuple(out for out in MAIN_TASKS if probe[out][0] == probe[out][1])
        for out in constant:
            if out in CONSTANT[self.mode]:
                continue  # declared constant in every fit already
            forests = USES[self.mode][out]
            if all(task in untrained for task in forests):
                why = f"the train labels of the {'/'.join(forests)} forest are one class"
            else:
                why = "a factor is a train rate of 0"
            self.OUTPUTS_HOW[out] += f" (constant: {why})"
        self.CONSTANT_OUTPUTS = constant
        self.info["constant_outputs"] = ",".join(constant)

    def _fit_task(self, task: str, data, budget: TreeBudget, ctx) -> None:
        rows, labels = TASKS[task].rows_and_labels(data.train)
        encoder = TreeFeatures(self.encoding, seed=ctx.seed)
        X = _features(encoder, data.train, rows, encoder.fit(data.train, rows, labels,
                                                            data.vocab_sizes))
        self.encoders[task] = encoder
        self.info[f"{task}_train_rows"] = int(len(rows))
        self.info[f"{task}_n_features"] = int(X.shape[1])
        self.info[f"{task}_input"] = type(X).__name__  # ndarray, or ChunkedFeatures
        if len(rows) < 2 or labels.min() == labels.max():
            self.boosters[task] = None  # nothing to learn: predict the train rate
            self.info[f"{task}_rounds"] = 0
            return
        valid_rows, valid_labels = TASKS[task].rows_and_labels(data.valid)
        self.info[f"{task}_valid_rows"] = int(len(valid_rows))
        X_valid = _features(encoder, data.valid, valid_rows, {}) if len(valid_rows) else None
        if len(valid_rows) and valid_labels.min() == valid_labels.max():
            budget = replace(budget, stopping_metric="logloss")  # AUC needs both classes
            self.info[f"{task}_stopping_metric_why"] = "validation labels are one class"
        # What the library watched: the profile's metric, log loss, or nothing (no valid rows).
        self.info[f"{task}_stopping_metric"] = budget.stopping_metric if len(valid_rows) \
            else "none"
        booster = self.lib.train(X, labels, X_valid, valid_labels, encoder.categorical,
                                 encoder.names, budget, ctx.seed, ctx.threads,
                                 on_round=_round_reporter(ctx, task, self.mode))
        self.boosters[task] = booster
        self.info[f"{task}_rounds"] = int(self.lib.n_rounds(booster))

    # ---- serving ----

    def features(self, split) -> dict[str, np.ndarray]:
        """Each forest's input matrix for the rows of `split` (feature assembly only)."""
        return {task: encoder.transform(split) for task, encoder in self.encoders.items()}

    def compile(self) -> float:
        """Compile every forest with lleaves (cached by content); seconds it took."""
        from baselines.compiled import compile_booster

        started = time.perf_counter()
        for task, booster in self.boosters.items():
            if booster is not None and task not in self.compiled:
                self.compiled[task] = compile_booster(self.library, booster,
                                                      self.encoders[task].categorical)
        return time.perf_counter() - started

    def score(self, features: dict[str, np.ndarray], compiled: bool = False,
              threads: int | None = None) -> dict[str, np.ndarray]:
        """pCTR, pCVR, pCTCVR from assembled features; library predict unless `compiled`."""
        threads = threads or self.threads
        if compiled and len(self.compiled) < sum(b is not None for b in self.boosters.values()):
            self.compile()
        own = {}
        for task, X in features.items():
            booster = self.boosters[task]
            if booster is None:
                own[task] = np.full(len(X), self.priors[task])
            elif compiled:
                own[task] = self.compiled[task].predict(X, threads)
            else:
                own[task] = self.lib.predict(booster, X, threads)
        return self._compose({t: np.asarray(p, dtype=np.float64) for t, p in own.items()})

    def _compose(self, own: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prior = self.priors
        if self.mode == "ctr_x_cvr":
            return {"ctr": own["ctr"], "cvr": own["cvr"], "ctcvr": own["ctr"] * own["cvr"]}
        if self.mode == "ctr":
            p = own["ctr"]
            return {"ctr": p, "cvr": np.full(len(p), prior["cvr"]), "ctcvr": p * prior["cvr"]}
        if self.mode == "cvr":
            p = own["cvr"]
            return {"ctr": np.full(len(p), prior["ctr"]), "cvr": p, "ctcvr": prior["ctr"] * p}
        p = own["ctcvr"]
        return {"ctr": np.minimum(1.0, p / max(prior["cvr"], 1e-12)),
                "cvr": np.minimum(1.0, p / max(prior["ctr"], 1e-12)), "ctcvr": p}

    def predict(self, split) -> dict[str, np.ndarray]:
        from ccp.data.chunks import chunk_bounds, chunk_rows_for

        rows = chunk_rows_for(split, 0)  # a memory-mapped or long split: chunk by chunk
        if not rows:
            return self.score(self.features(split))
        parts = [self.score(self.features(split.slice_rows(start, stop, own_requests=False)))
                 for start, stop in chunk_bounds(len(split), rows)]
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def predict_fast(self, split, threads: int = 1) -> dict[str, np.ndarray]:
        return self.score(self.features(split), compiled=True, threads=threads)

    def n_params(self) -> int:
        return sum(self.lib.n_nodes(b) for b in self.boosters.values() if b is not None)


def _features(encoder: TreeFeatures, split, rows: np.ndarray, oof: dict):
    """The fitted encoder's features of `split`'s `rows`: one matrix, or for a memory-mapped or
    long split a ChunkedFeatures the libraries read a chunk at a time (baselines/tree_input.py).
    `oof`: the rows' out-of-fold target encodings (train), empty otherwise."""
    from ccp.data.chunks import chunk_rows_for

    chunk_rows = chunk_rows_for(split, 0)
    if chunk_rows and len(rows) > chunk_rows:
        from baselines.tree_input import ChunkedFeatures

        return ChunkedFeatures(encoder, split, rows, oof, chunk_rows)
    return encoder.rows_features(split, rows, oof)


def _round_reporter(ctx, task: str, mode: str):
    """ctx.on_validation for the rounds of the mode's first forest only: a step is then the
    same forest's round in every fit (the ctr_x_cvr pair's cvr forest would put another
    task's log loss at the steps a longer ctr forest still reports)."""
    report = getattr(ctx, "on_validation", None)
    return report if report is not None and task == MODES[mode][0] else None


def _sample(rows: np.ndarray, labels: np.ndarray, max_rows: int, seed: int):
    """At most `max_rows` of the rows (0 = all), uniformly at random with the model seed."""
    if not max_rows or len(rows) <= max_rows:
        return rows, labels
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), max_rows, replace=False))
    return rows[keep], labels[keep]
