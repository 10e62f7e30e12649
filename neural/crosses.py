"""User x candidate cross ids: (user 101, category 206), (user, shop 207), (user, brand 216).

The trees get these crosses target-encoded (baselines/tree_features.py, CROSSES); a network
gets them as three more single-valued item fields, each a hashed id with its own embedding
rows (the usual feature-cross hashing of CTR models). A pair's code:

    0 (CODE_MISSING)  either side is absent on the line;
    1 (CODE_RARE)     either side is a rare id, or the pair occurs in fewer than `min_count`
                      train impressions (the encoder's rule for single ids, ccp/data/encode.py),
                      so a pair unseen in train reads "no history", not another pair's bucket;
    2 + bucket        otherwise: bucket = hash(user code, item code) mod `buckets`
                      (pandas.util.hash_array of (user << 32) | item, a fixed 64-bit mix).

Buckets per cross (`buckets_for`): the next power of two of 4x the cross's frequent pairs, at
least MIN_BUCKETS and at most MAX_BUCKETS, so that few frequent pairs share a bucket (with
K keys in B = 4K buckets, about 1 - e^(-1/4) = 22% of keys share one with another) while the
table stays bounded on the full data (3 x MAX_BUCKETS x embedding_dim floats at most).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ccp.data import schema

CROSSES = (("101", "206"), ("101", "207"), ("101", "216"))
CROSS_FIELDS = tuple(f"{user}x{item}" for user, item in CROSSES)
LOAD_FACTOR = 4  # buckets per frequent pair
MIN_BUCKETS = 1 << 10
MAX_BUCKETS = 1 << 20


def buckets_for(n_frequent: int) -> int:
    wanted = max(LOAD_FACTOR * int(n_frequent), 1)
    return int(min(max(1 << (wanted - 1).bit_length(), MIN_BUCKETS), MAX_BUCKETS))


def pair_codes(split) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(user code, item code) of every impression, per cross field."""
    user = split.user_codes[split.request, schema.USER_SINGLE.index("101")]
    return {name: (user, split.item_codes[:, schema.IMPRESSION_SINGLE.index(item)])
            for name, (_, item) in zip(CROSS_FIELDS, CROSSES)}


def _keys(user: np.ndarray, item: np.ndarray) -> np.ndarray:
    return (user.astype(np.uint64) << np.uint64(32)) | item.astype(np.uint64)


@dataclass(frozen=True)
class CrossIds:
    """The pairs frequent in train (sorted keys) and the bucket count of each cross field."""

    frequent: dict[str, np.ndarray]  # field -> sorted uint64 keys seen >= min_count times
    buckets: dict[str, int]
    min_count: int

    @classmethod
    def fit(cls, train, min_count: int) -> CrossIds:
        frequent = {}
        for name, (user, item) in pair_codes(train).items():
            known = (user >= schema.FIRST_CODE) & (item >= schema.FIRST_CODE)
            keys, counts = np.unique(_keys(user[known], item[known]), return_counts=True)
            frequent[name] = keys[counts >= min_count]
        return cls(frequent, {name: buckets_for(len(keys)) for name, keys in frequent.items()},
                   min_count)

    def vocab_sizes(self) -> dict[str, int]:
        """Rows of each cross field in the embedding table (the two reserved codes included)."""
        return {name: schema.FIRST_CODE + b for name, b in self.buckets.items()}

    def codes(self, split) -> np.ndarray:
        """(n, 3) int64: each impression's code of each cross field (module doc)."""
        pairs = pair_codes(split)
        out = np.empty((len(split), len(CROSS_FIELDS)), dtype=np.int64)
        for k, name in enumerate(CROSS_FIELDS):
            out[:, k] = self.field_codes(name, *pairs[name])
        return out

    def field_codes(self, name: str, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        from pandas.util import hash_array

        keys, frequent = _keys(user, item), self.frequent[name]
        # Keys of a missing or rare side are never frequent (fit skips them).
        seen = np.zeros(len(keys), dtype=bool)
        if len(frequent):
            seen = frequent[np.minimum(np.searchsorted(frequent, keys), len(frequent) - 1)] == keys
        bucket = hash_array(keys, categorize=False) % np.uint64(self.buckets[name])
        codes = np.where(seen, bucket.astype(np.int64) + schema.FIRST_CODE, schema.CODE_RARE)
        missing = (user == schema.CODE_MISSING) | (item == schema.CODE_MISSING)
        return np.where(missing, schema.CODE_MISSING, codes)
