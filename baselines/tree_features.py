"""Features for tree models, built from a `Split`, fitted on the train split only.

Columns, in order (see `TreeFeatures.names`):
- native: the codes of the low-cardinality fields (user profile 121..129, context 301), which
  the trees split on as categories;
- per high-cardinality field (user 101, item 205, category 206, shop 207, brand 216, the four
  combination ids, and the first intention node of 210), depending on `encoding`:
  `count` = how many train impressions carry that code (0 for the shared rare/unseen code,
  NaN when the field is absent); `target` = out-of-fold target encoding of this model's own
  label (scikit-learn's TargetEncoder, which cross-fits on train; valid/test rows get the
  encoding fitted on all train rows); `native` = the code itself, split on as a category;
- the 12 dense columns of `Split.dense` (combination weights, behaviour list mean weights and
  lengths) and the length of the item's intention-node list (210).

Every transform after fitting is a table lookup indexed by code, so scoring a request costs a
few NumPy gathers, and the tables can be checked against scikit-learn's own transform.
"""

from __future__ import annotations

import numpy as np

from bench.data import schema

LOW_CARDINALITY = ("121", "122", "124", "125", "126", "127", "128", "129", "301")
HIGH_CARDINALITY = ("101", "205", "206", "207", "216", "508", "509", "702", "853", "210")
ENCODINGS = ("count", "target", "count+target", "native")
DEFAULT_ENCODING = "count+target"  # chosen by measurement: see baselines/README.md


def field_codes(split, fields=LOW_CARDINALITY + HIGH_CARDINALITY) -> dict[str, np.ndarray]:
    """The code of each field per impression; for the multi-valued 210, its first code."""
    user = split.user_codes[split.request]
    out = {}
    for name in fields:
        if name == "210":
            lists = split.item_multi["210"]
            has_list = lists.lengths() > 0
            first = np.full(lists.n_rows, schema.CODE_MISSING, dtype=np.int64)
            first[has_list] = lists.codes[lists.offsets[:-1][has_list]]
            out[name] = first
        elif name in schema.USER_SINGLE:
            out[name] = user[:, schema.USER_SINGLE.index(name)]
        else:
            out[name] = split.item_codes[:, schema.IMPRESSION_SINGLE.index(name)]
    return out


def task_rows_and_labels(split, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows a single-task model trains on and its labels (cvr: clicked rows only)."""
    click = split.click.astype(bool)
    if task == "ctr":
        return np.arange(len(split)), click.astype(np.int8)
    if task == "cvr":
        rows = np.flatnonzero(click)
        return rows, split.purchase[rows].astype(np.int8)
    if task == "ctcvr":
        return np.arange(len(split)), (click & split.purchase.astype(bool)).astype(np.int8)
    raise ValueError(f"unknown tree task {task!r}; known: ctr, cvr, ctcvr")


class TreeFeatures:
    """Fit on train (all impressions for counts, the task's rows and labels for target
    encoding); `transform(split)` gives a float64 matrix with `names` and `categorical`."""

    def __init__(self, encoding: str = DEFAULT_ENCODING, seed: int = 0, cv: int = 5):
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown tree feature encoding {encoding!r}; known: {ENCODINGS}")
        self.encoding = encoding
        self.seed = seed
        self.cv = cv
        self.count_tables: dict[str, np.ndarray] = {}
        self.target_tables: dict[str, np.ndarray] = {}
        self.target_prior = 0.0
        self.names: list[str] = []
        self.categorical: list[int] = []

    @property
    def uses_count(self) -> bool:
        return "count" in self.encoding

    @property
    def uses_target(self) -> bool:
        return "target" in self.encoding

    def fit_transform(self, train, rows: np.ndarray, labels: np.ndarray,
                      vocab_sizes: dict[str, int]) -> np.ndarray:
        """Fit on `train` and return the features of train `rows`; target encodings there are
        out-of-fold, so no row's own label leaks into its features."""
        codes = field_codes(train)
        if self.uses_count:
            for name in HIGH_CARDINALITY:
                size = max(vocab_sizes.get(name, 0), int(codes[name].max(initial=0)) + 1)
                counts = np.bincount(codes[name], minlength=size).astype(np.float64)
                counts[schema.CODE_RARE] = 0.0  # rare ids were each seen < min_count times
                counts[schema.CODE_MISSING] = np.nan
                self.count_tables[name] = counts
        oof = self._fit_target(codes, rows, labels, vocab_sizes) if self.uses_target else {}
        return self._assemble(train, rows, oof)

    def _fit_target(self, codes, rows, labels, vocab_sizes) -> dict[str, np.ndarray]:
        from sklearn.model_selection import StratifiedKFold
        from sklearn.preprocessing import TargetEncoder

        matrix = np.column_stack([codes[name][rows] for name in HIGH_CARDINALITY])
        n_pos = int(labels.sum())
        folds = min(self.cv, n_pos, len(labels) - n_pos)
        prior = float(labels.mean()) if len(labels) else 0.0
        if folds < 2:  # too few of one class to cross-fit: every code gets the prior
            self.target_prior = prior
            for name in HIGH_CARDINALITY:
                self.target_tables[name] = np.full(vocab_sizes.get(name, 2), prior)
            return {name: np.full(len(rows), prior) for name in HIGH_CARDINALITY}
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.seed)
        encoder = TargetEncoder(target_type="binary", cv=splitter)
        encoded = encoder.fit_transform(matrix, labels)
        self.target_prior = float(encoder.target_mean_)
        for j, name in enumerate(HIGH_CARDINALITY):
            size = max(vocab_sizes.get(name, 0), int(codes[name].max(initial=0)) + 1)
            table = np.full(size, encoder.target_mean_)  # unseen codes: the train mean
            table[encoder.categories_[j].astype(np.int64)] = encoder.encodings_[j]
            self.target_tables[name] = table
        self.target_encoder_ = encoder  # kept so tests can compare it with the tables
        return {name: encoded[:, j] for j, name in enumerate(HIGH_CARDINALITY)}

    def transform(self, split) -> np.ndarray:
        return self._assemble(split, None, {})

    def _assemble(self, split, rows, oof: dict[str, np.ndarray]) -> np.ndarray:
        codes = field_codes(split)
        dense = split.dense
        lengths_210 = split.item_multi["210"].lengths()
        if rows is not None:
            codes = {name: c[rows] for name, c in codes.items()}
            dense, lengths_210 = dense[rows], lengths_210[rows]
        columns, names, categorical = [], [], []
        for name in LOW_CARDINALITY:
            categorical.append(len(columns))
            columns.append(codes[name].astype(np.float64))
            names.append(f"f{name}")
        for name in HIGH_CARDINALITY:
            if self.encoding == "native":
                categorical.append(len(columns))
                columns.append(codes[name].astype(np.float64))
                names.append(f"f{name}")
            if self.uses_count:
                columns.append(_lookup(self.count_tables[name], codes[name], 0.0))
                names.append(f"f{name}_count")
            if self.uses_target:
                if name in oof:
                    columns.append(oof[name])
                else:
                    columns.append(_lookup(self.target_tables[name], codes[name],
                                           self.target_prior))
                names.append(f"f{name}_te")
        for j, name in enumerate(schema.DENSE_FEATURES):
            columns.append(dense[:, j].astype(np.float64))
            names.append(name)
        columns.append(lengths_210.astype(np.float64))
        names.append("f210_len")
        self.names, self.categorical = names, categorical
        return np.ascontiguousarray(np.column_stack(columns))


def _lookup(table: np.ndarray, codes: np.ndarray, fallback: float) -> np.ndarray:
    """table[code], with `fallback` for a code beyond the table (not in the train vocabulary)."""
    inside = codes < len(table)
    return np.where(inside, table[np.where(inside, codes, 0)], fallback)
