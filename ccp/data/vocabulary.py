"""Vocabularies: which raw ids of a field get a code of their own, counted batch by batch.

An id keeps its own code when it occurs at least `min_count` times in train; rarer ids and ids
unseen in train share one reserved code, and an absent field (-1) has another.
"""

from __future__ import annotations

import numpy as np

from ccp.data import schema


class Vocabulary:
    """Kept raw ids of one field, sorted; code = FIRST_CODE + position."""

    def __init__(self, kept_ids: np.ndarray):
        self.kept_ids = np.sort(np.asarray(kept_ids, dtype=np.int64))

    @property
    def size(self) -> int:
        return schema.FIRST_CODE + len(self.kept_ids)

    @classmethod
    def fit(cls, ids: np.ndarray, weights: np.ndarray | None, min_count: int) -> Vocabulary:
        """The vocabulary of ids counted in one batch (`weights`: occurrences of each id)."""
        counts = IdCounts()
        counts.add(ids, weights)
        return counts.vocabulary(min_count)

    def encode(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if len(self.kept_ids) == 0:
            return np.where(ids < 0, schema.CODE_MISSING, schema.CODE_RARE).astype(np.int64)
        pos = np.searchsorted(self.kept_ids, ids)
        pos_clipped = np.minimum(pos, len(self.kept_ids) - 1)
        known = self.kept_ids[pos_clipped] == ids
        codes = np.where(known, pos_clipped + schema.FIRST_CODE, schema.CODE_RARE)
        return np.where(ids < 0, schema.CODE_MISSING, codes).astype(np.int64)


class IdCounts:
    """Occurrences per id, summed over batches; memory grows with distinct ids only."""

    def __init__(self):
        self.ids = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_len = 0

    def add(self, ids: np.ndarray, weights: np.ndarray | None = None) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        present = ids >= 0
        ids = ids[present]
        weights = (np.ones(len(ids), dtype=np.int64) if weights is None
                   else np.asarray(weights, dtype=np.int64)[present])
        if len(ids):
            self._pending.append(_sum_by_id(ids, weights))
            self._pending_len += len(self._pending[-1][0])
        if self._pending_len > max(len(self.ids), 1 << 20):  # merge before pending dominates
            self._merge()

    def _merge(self) -> None:
        if self._pending:
            ids = np.concatenate([self.ids] + [p[0] for p in self._pending])
            counts = np.concatenate([self.counts] + [p[1] for p in self._pending])
            self.ids, self.counts = _sum_by_id(ids, counts)
            self._pending, self._pending_len = [], 0

    def vocabulary(self, min_count: int) -> Vocabulary:
        self._merge()
        return Vocabulary(self.ids[self.counts >= min_count])


def _sum_by_id(ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ids (sorted) and the integer sum of their weights."""
    order = np.argsort(ids, kind="stable")
    ids, weights = ids[order], weights[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, int)
    return ids[starts], (np.add.reduceat(weights, starts) if len(ids)
                         else np.zeros(0, dtype=np.int64))
