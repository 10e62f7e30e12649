"""A forest's input assembled a chunk of rows at a time, for splits too large to hold whole.

The whole-split matrix of the full data (42M train rows x ~40 float64 columns) is ~13 GB; the
libraries do not need it: LightGBM builds its Dataset from a `Sequence` (a row sample for the
bins, then rows in batches) and XGBoost its `QuantileDMatrix` from a `DataIter` (sketches, then
bins), both holding only binned values (~1 byte per cell). `ChunkedFeatures` is what both read:
the rows of one task (e.g. clicked rows for CVR) in order, `chunk_rows` at a time.
The adapters are in baselines/lgbm.py (`sequence`) and baselines/xgb.py (`QuantileDMatrix`).
"""

from __future__ import annotations

import numpy as np

from ccp.data.chunks import chunk_bounds


class ChunkedFeatures:
    def __init__(self, encoder, split, rows: np.ndarray, oof: dict[str, np.ndarray],
                 chunk_rows: int):
        self.encoder, self.split, self.rows, self.oof = encoder, split, rows, oof
        self.chunk_rows = chunk_rows
        self.bounds = chunk_bounds(len(rows), chunk_rows)
        self._cached = (-1, None)
        self.n_features = self.chunk(0).shape[1]  # also sets encoder.names and .categorical

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), self.n_features

    def chunk(self, k: int) -> np.ndarray:
        """Features of the k-th chunk of rows (the last one asked for is kept: LightGBM reads
        its bin sample row by row, in increasing row order)."""
        if self._cached[0] != k:
            start, stop = self.bounds[k]
            oof = {name: values[start:stop] for name, values in self.oof.items()}
            features = self.encoder.rows_features(self.split, self.rows[start:stop], oof)
            self._cached = (k, features)
        return self._cached[1]

    def row(self, i: int) -> np.ndarray:
        return self.chunk(i // self.chunk_rows)[i % self.chunk_rows]
