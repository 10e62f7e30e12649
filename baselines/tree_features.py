"""Features for tree models, built from a `Split`, fitted on the train split only.

Columns, in order (see `TreeFeatures.names`):
- native: the codes of the low-cardinality fields (user profile 121..129, context 301), which
  the trees split on as categories;
- per high-cardinality field (user 101, item 205, category 206, shop 207, brand 216, the four
  combination ids, and the first intention node of 210), depending on `encoding`:
  `count` = how many train impressions carry that code (0 for the shared rare/unseen code,
  NaN when the field is absent); `target` = out-of-fold target encoding of this model's own
  label (scikit-learn's TargetEncoder, cross-fitted on train over folds of whole requests, so
  no train row's value holds the labels of its own request's other impressions, which share
  its user; the processed CSV form has no request key, so its requests are rebuilt from runs of
  equal user-side fields; valid/test rows get the encoding fitted on all train rows);
  `native` = the code itself, split on as a category;
  `+cross` adds count and target encodings of the user crossed with the item's category, shop
  and brand (the user's own history with them);
- the 12 dense columns of `Split.dense` (combination weights, behaviour list mean weights and
  lengths) and the length of the item's intention-node list (210).

Every transform after fitting is a lookup in sorted code tables, so scoring a request costs a
few NumPy searches, and the tables can be checked against scikit-learn's own transform.
"""

from __future__ import annotations

import numpy as np

import baselines.openmp  # noqa: F401  (before lightgbm/xgboost/sklearn load)
from ccp import stats
from ccp.data import schema

LOW_CARDINALITY = ("121", "122", "124", "125", "126", "127", "128", "129", "301")
HIGH_CARDINALITY = ("101", "205", "206", "207", "216", "508", "509", "702", "853", "210")
# The user's own rate on this item's category, shop and brand (crosses of two codes).
CROSSES = (("101", "206"), ("101", "207"), ("101", "216"))
ENCODINGS = ("count", "target", "count+target", "native", "count+target+cross")
DEFAULT_ENCODING = "count+target+cross"  # chosen by measurement: see baselines/README.md


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


def request_folds(requests: np.ndarray, labels: np.ndarray, n_folds: int,
                  seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, held-out rows) of each cross-fitting fold; every request's rows fall in one
    fold, and folds get near-equal shares of positives and rows.

    Requests are shuffled with `seed`, ordered by positives then rows (most first) and dealt
    to folds 0..k-1, k-1..0, 0..k-1, ... A vectorised counterpart of scikit-learn's
    StratifiedGroupKFold, whose per-request Python loop costs about 0.3 ms a request (minutes
    on the full data's 730k requests). Fewer folds (or none) when fewer requests hold a
    positive or a negative.
    """
    ids, inverse = np.unique(requests, return_inverse=True)
    positives = np.bincount(inverse, weights=labels, minlength=len(ids))
    sizes = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
    n_folds = min(n_folds, int((positives > 0).sum()), int((positives < sizes).sum()))
    if n_folds < 2:
        return []
    shuffled = np.random.default_rng(seed).permutation(len(ids))
    order = shuffled[np.lexsort((-sizes[shuffled], -positives[shuffled]))]  # stable
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids))
    lap, place = np.divmod(rank, n_folds)
    fold = np.where(lap % 2 == 0, place, n_folds - 1 - place)[inverse]
    return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(n_folds)]


class Lookup:
    """code -> value for the codes seen in train, `default` for any other code.

    Codes below DENSE_LIMIT (every single field's codes) index a dense array; larger codes
    (crosses of two fields) are found by binary search in the sorted seen codes.
    """

    DENSE_LIMIT = 1 << 20

    def __init__(self, keys: np.ndarray, values: np.ndarray, default: float):
        keys = np.asarray(keys, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        self.default = float(default)
        self.dense = None
        if len(keys) and 0 <= keys.min() and keys.max() < self.DENSE_LIMIT:
            self.dense = np.full(int(keys.max()) + 1, self.default)
            self.dense[keys] = values
        order = np.argsort(keys, kind="stable")
        self.keys, self.values = keys[order], values[order]

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        if self.dense is not None:
            inside = (codes >= 0) & (codes < len(self.dense))
            return np.where(inside, self.dense[np.where(inside, codes, 0)], self.default)
        if len(self.keys) == 0:
            return np.full(len(codes), self.default)
        pos = np.minimum(np.searchsorted(self.keys, codes), len(self.keys) - 1)
        return np.where(self.keys[pos] == codes, self.values[pos], self.default)


class TreeFeatures:
    """Fit on train (all impressions for counts, the task's rows and labels for target
    encoding); `transform(split)` gives a float64 matrix with `names` and `categorical`."""

    def __init__(self, encoding: str = DEFAULT_ENCODING, seed: int = 0, cv: int = 5):
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown tree feature encoding {encoding!r}; known: {ENCODINGS}")
        self.encoding = encoding
        self.seed = seed
        self.cv = cv
        self.cross_base: dict[str, int] = {}
        self.count_tables: dict[str, Lookup] = {}
        self.target_tables: dict[str, Lookup] = {}
        self.names: list[str] = []
        self.categorical: list[int] = []

    @property
    def uses_count(self) -> bool:
        return "count" in self.encoding

    @property
    def uses_target(self) -> bool:
        return "target" in self.encoding

    def _keys(self, codes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The code of every encoded column: each high-cardinality field, and each cross."""
        keys = {name: codes[name] for name in HIGH_CARDINALITY}
        if "cross" in self.encoding:
            for a, b in CROSSES:
                keys[f"{a}x{b}"] = codes[a] * self.cross_base[b] + codes[b]
        return keys

    def fit_transform(self, train, rows: np.ndarray, labels: np.ndarray,
                      vocab_sizes: dict[str, int]) -> np.ndarray:
        """Fit on `train` and return the features of train `rows`; target encodings there are
        out-of-fold, so no row's own label leaks into its features."""
        return self._assemble(train, rows, self.fit(train, rows, labels, vocab_sizes))

    def fit(self, train, rows: np.ndarray, labels: np.ndarray,
            vocab_sizes: dict[str, int]) -> dict[str, np.ndarray]:
        """Fit the tables on `train`; the out-of-fold target encodings of train `rows` (what
        `rows_features` needs to assemble those rows' features a chunk at a time)."""
        codes = field_codes(train, HIGH_CARDINALITY)
        self.cross_base = {b: max(vocab_sizes.get(b, 0), int(codes[b].max(initial=0)) + 1)
                           for _, b in CROSSES}
        keys = self._keys(codes)
        if self.uses_count:
            for name, key in keys.items():
                seen, counts = np.unique(key, return_counts=True)
                counts = counts.astype(np.float64)
                if name in HIGH_CARDINALITY:
                    counts[seen == schema.CODE_RARE] = 0.0  # each seen < min_count times
                    counts[seen == schema.CODE_MISSING] = np.nan
                self.count_tables[name] = Lookup(seen, counts, 0.0)
        # Folds of whole requests; the processed CSV form has no request key, so there they
        # are rebuilt from the user-side fields (ccp.stats.request_groups), not rows.
        requests = stats.request_groups(train)[0][rows] if self.uses_target else None
        return self._fit_target(keys, rows, labels, requests) if self.uses_target else {}

    def _fit_target(self, keys, rows, labels, requests) -> dict[str, np.ndarray]:
        from sklearn.preprocessing import TargetEncoder

        names = list(keys)
        folds = request_folds(requests, labels, self.cv, self.seed)
        prior = float(labels.mean()) if len(labels) else 0.0
        if len(folds) < 2:  # too few of one class to cross-fit: every code gets the prior
            empty = np.zeros(0, dtype=np.int64)
            self.target_tables = {name: Lookup(empty, empty, prior) for name in names}
            return {name: np.full(len(rows), prior) for name in names}
        encoder = TargetEncoder(target_type="binary", cv=folds)
        encoded = encoder.fit_transform(np.column_stack([keys[n][rows] for n in names]), labels)
        # Codes not in train get the train mean, as TargetEncoder.transform does.
        self.target_tables = {name: Lookup(encoder.categories_[j], encoder.encodings_[j],
                                           encoder.target_mean_)
                              for j, name in enumerate(names)}
        self.target_encoder_ = encoder  # kept so tests can compare it with the tables
        return {name: encoded[:, j] for j, name in enumerate(names)}

    def transform(self, split) -> np.ndarray:
        return self._assemble(split, None, {})

    def rows_features(self, split, rows: np.ndarray, oof: dict[str, np.ndarray]) -> np.ndarray:
        """The features of `split`'s `rows` alone (a chunk); `oof` holds those rows' out-of-fold
        target encodings, in the same order (empty for a split the encoder was not fit on)."""
        return self._assemble(split.take(rows), None, oof)

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
        for name, key in self._keys(codes).items():
            if self.encoding == "native":
                categorical.append(len(columns))
                columns.append(key.astype(np.float64))
                names.append(f"f{name}")
            if self.uses_count:
                columns.append(self.count_tables[name](key))
                names.append(f"f{name}_count")
            if self.uses_target:
                columns.append(oof[name] if name in oof else self.target_tables[name](key))
                names.append(f"f{name}_te")
        for j, name in enumerate(schema.DENSE_FEATURES):
            columns.append(dense[:, j].astype(np.float64))
            names.append(name)
        columns.append(lengths_210.astype(np.float64))
        names.append("f210_len")
        self.names, self.categorical = names, categorical
        return np.ascontiguousarray(np.column_stack(columns))
