"""Where the encoder's output arrays go: .npy files grown batch by batch, or lists in memory.

Both stores take the same calls (an appender per array, a whole array saved at once) and
give the arrays back to npy_cache.assemble_splits by folder and stem, so the encoder writes
one way whether its result is memory-mapped or held in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ccp.data.npy_cache import NpyAppender, RaggedAppender


class ArrayList:
    """Rows appended batch by batch, joined into one array on close (one batch: no copy)."""

    def __init__(self, dtype, row_shape: tuple = ()):
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(row_shape)
        self.rows = 0
        self.parts: list[np.ndarray] = []
        self.array: np.ndarray | None = None

    def append(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=self.dtype)
        if values.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {values.shape[1:]}, expected {self.row_shape}")
        self.parts.append(values)
        self.rows += len(values)

    def close(self) -> None:
        if self.array is None:
            self.array = (self.parts[0] if len(self.parts) == 1
                          else np.concatenate(self.parts) if self.parts
                          else np.zeros((0, *self.row_shape), dtype=self.dtype))
            self.parts = []


class _Store:
    def ragged(self, folder: str, prefix: str, field: str) -> RaggedAppender:
        return RaggedAppender(lambda stem, dtype: self.array(folder, stem, dtype), prefix, field)


class NpyStore(_Store):
    """Arrays as .npy files under `root`, one folder per split or request table (read back
    memory-mapped by npy_cache.npy_reader)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _folder(self, folder: str) -> Path:
        path = self.root / folder
        path.mkdir(parents=True, exist_ok=True)
        return path

    def array(self, folder: str, stem: str, dtype, row_shape: tuple = ()) -> NpyAppender:
        return NpyAppender(self._folder(folder) / f"{stem}.npy", dtype, row_shape)

    def save(self, folder: str, stem: str, array: np.ndarray) -> None:
        np.save(self._folder(folder) / f"{stem}.npy", array)



class MemoryStore(_Store):
    """Arrays held in memory, by folder and stem."""

    def __init__(self):
        self.folders: dict[str, dict[str, ArrayList | np.ndarray]] = {}

    def array(self, folder: str, stem: str, dtype, row_shape: tuple = ()) -> ArrayList:
        appender = ArrayList(dtype, row_shape)
        self.folders.setdefault(folder, {})[stem] = appender
        return appender

    def save(self, folder: str, stem: str, array: np.ndarray) -> None:
        self.folders.setdefault(folder, {})[stem] = array

    def reader(self, folder: str):
        arrays = self.folders[folder]
        return lambda stem: (arrays[stem].array if isinstance(arrays[stem], ArrayList)
                             else arrays[stem])
