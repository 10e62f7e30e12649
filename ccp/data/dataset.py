"""The model-ready form of a data set: integer codes, pooled-list inputs and dense features.

User-side features live once per request (``Split.user_*``) and are joined to impressions
through ``Split.request`` only when a batch is built, never copied into every impression:
Ali-CCP's ~500 user features per request would otherwise multiply memory by ~58.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def segment_sums(values: np.ndarray, offsets: np.ndarray, dtype=None) -> np.ndarray:
    """Sum of values[offsets[i]:offsets[i+1]] for every row i; 0 for an empty row.

    np.add.reduceat alone is wrong on empty rows: it returns the value at an empty row's start,
    and fails when that start is the end of `values` (empty last rows). So it is given the
    starts of the non-empty rows only: between two of them lie only empty rows, hence each
    sum runs exactly to its row's end. Sums accumulate and come back in `dtype` (default: that
    of `values`)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    first, last = (int(offsets[0]), int(offsets[-1])) if len(offsets) else (0, 0)
    sums = np.zeros(max(len(offsets) - 1, 0), dtype=dtype or np.asarray(values).dtype)
    non_empty = np.flatnonzero(np.diff(offsets) > 0)
    if len(non_empty):
        sums[non_empty] = np.add.reduceat(values[first:last], offsets[non_empty] - first,
                                          dtype=sums.dtype)
    return sums


@dataclass
class Ragged:
    """Variable-length id lists with weights, in CSR form (row i is offsets[i]:offsets[i+1]).

    offsets[0] is 0 and offsets[-1] is the number of values (checked on construction), so
    codes and weights hold exactly the values of the rows; any row may be empty."""

    offsets: np.ndarray  # int64 (n_rows + 1,)
    codes: np.ndarray  # int64 (n_values,)
    weights: np.ndarray  # float32 (n_values,)

    def __post_init__(self):
        n_values = int(self.offsets[-1]) if len(self.offsets) else -1
        if len(self.offsets) == 0 or self.offsets[0] != 0 or \
                not n_values == len(self.codes) == len(self.weights):
            raise ValueError(f"not a CSR list: {len(self.offsets)} offsets from "
                             f"{self.offsets[:1].tolist()} to {self.offsets[-1:].tolist()} for "
                             f"{len(self.codes)} codes and {len(self.weights)} weights")

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row_of_value(self) -> np.ndarray:
        """The row each value belongs to (int64, n_values): empty rows own none."""
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), self.lengths())

    def take(self, rows: np.ndarray) -> Ragged:
        """The lists of `rows`, in that order (vectorised: no loop over rows)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        new_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_offsets[1:])
        # For each output value: its source position = row start + rank within the row.
        source = np.repeat(starts - new_offsets[:-1], lengths) + np.arange(new_offsets[-1])
        return Ragged(new_offsets, self.codes[source], self.weights[source])

    def slice(self, start: int, stop: int) -> Ragged:
        """Rows start:stop as views (contiguous: a memory-mapped list reads only these rows)."""
        first, last = int(self.offsets[start]), int(self.offsets[stop])
        return Ragged(np.asarray(self.offsets[start:stop + 1]) - first,
                      self.codes[first:last], self.weights[first:last])

    def row_mean_weight(self) -> np.ndarray:
        """Mean weight of each row's list (float32); 0 for an empty list. Summed in float64:
        a float32 running sum made the mean of n equal weights differ from that weight, which
        the min-max scaling then blew up (tests/test_generated_regressions.py)."""
        sums = segment_sums(self.weights, self.offsets, np.float64)
        return (sums / np.maximum(self.lengths(), 1)).astype(np.float32)


@dataclass
class Split:
    """One evaluation split: impressions with their labels, joined late to request features."""

    name: str
    click: np.ndarray  # int8 (n,)
    purchase: np.ndarray  # int8 (n,)
    sample_id: np.ndarray  # int64 (n,)
    request: np.ndarray  # int64 (n,), row of the request table
    item_codes: np.ndarray  # int64 (n, len(schema.IMPRESSION_SINGLE))
    item_multi: dict[str, Ragged]  # schema.ITEM_MULTI, one list per impression
    dense: np.ndarray  # float32 (n, len(schema.DENSE_FEATURES)), scaled on train
    request_key: np.ndarray  # str (n_requests,)
    user_codes: np.ndarray  # int64 (n_requests, len(schema.USER_SINGLE))
    user_multi: dict[str, Ragged]  # schema.USER_MULTI, one list per request
    p_click: np.ndarray | None = None  # true P(click), synthetic data only
    p_conversion: np.ndarray | None = None  # true P(purchase | click), synthetic data only

    def __len__(self) -> int:
        return len(self.click)

    @property
    def n_requests(self) -> int:
        return len(self.request_key)

    def take(self, rows: np.ndarray, name: str | None = None) -> Split:
        """A subset of impressions; the request table is kept whole (it is shared, not copied)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)

        def pick(a):
            return None if a is None else a[rows]

        return Split(
            name=name or self.name,
            click=self.click[rows],
            purchase=self.purchase[rows],
            sample_id=self.sample_id[rows],
            request=self.request[rows],
            item_codes=self.item_codes[rows],
            item_multi={f: r.take(rows) for f, r in self.item_multi.items()},
            dense=self.dense[rows],
            request_key=self.request_key,
            user_codes=self.user_codes,
            user_multi=self.user_multi,
            p_click=pick(self.p_click),
            p_conversion=pick(self.p_conversion),
        )

    def slice_rows(self, start: int, stop: int, name: str | None = None,
                   own_requests: bool = True) -> Split:
        """Impressions start:stop as contiguous views (a memory-mapped split reads only these).

        own_requests=True: the request table shrinks to the chunk's own requests, re-indexed
        from 0 (impressions of a request are contiguous, so these are few): the chunk a trainer
        holds in memory. False: the whole request table is shared, as `take` does."""
        request = np.asarray(self.request[start:stop])
        tables = {"request_key": self.request_key, "user_codes": self.user_codes,
                  "user_multi": self.user_multi}
        if own_requests:
            used, request = np.unique(request, return_inverse=True)
            tables = {"request_key": self.request_key[used], "user_codes": self.user_codes[used],
                      "user_multi": {f: r.take(used) for f, r in self.user_multi.items()}}

        def part(a):
            return None if a is None else a[start:stop]

        return Split(
            name=name or self.name,
            click=self.click[start:stop],
            purchase=self.purchase[start:stop],
            sample_id=self.sample_id[start:stop],
            request=request.astype(np.int64, copy=False),
            item_codes=self.item_codes[start:stop],
            item_multi={f: r.slice(start, stop) for f, r in self.item_multi.items()},
            dense=self.dense[start:stop],
            **tables,
            p_click=part(self.p_click),
            p_conversion=part(self.p_conversion),
        )

    def clicked(self) -> Split:
        return self.take(self.click == 1, name=f"{self.name}-clicked")

    def single_codes(self) -> np.ndarray:
        """All single-valued codes per impression, columns in schema.SINGLE_FIELDS order."""
        return np.concatenate([self.user_codes[self.request], self.item_codes], axis=1)

    def impression_user_multi(self, field_name: str) -> Ragged:
        """A user list field expanded to impressions (copies; use for small row sets)."""
        return self.user_multi[field_name].take(self.request)


@dataclass
class Dataset:
    name: str  # e.g. "synthetic-small-seed0", "aliccp-raw", "aliccp-csv"
    fingerprint: str
    train: Split
    valid: Split
    test: Split
    vocab_sizes: dict[str, int]  # field -> number of codes incl. the reserved 0 and 1
    info: dict = field(default_factory=dict)  # counts, rates, drops, oracle AUCs, notes

    @property
    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "valid": self.valid, "test": self.test}
