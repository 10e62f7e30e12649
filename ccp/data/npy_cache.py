"""The on-disk form of an encoded data set: one .npy file per array, read back memory-mapped.

A `Split` is written as a folder of .npy files (impression arrays) plus a folder for its request
table, which the validation and test halves share, as they do in memory. Arrays are appended
batch by batch (ccp.data.array_store): the .npy header is written first with 0 rows and
rewritten with the final row count on close (NumPy pads headers so the row count can grow in
place), so no array is ever whole in memory. `assemble_splits` with `npy_reader` memory-maps
every file: nothing is read until used, and the operating system pages it in and out as memory
allows. The maps are copy-on-write (mmap_mode="c"): code that writes into an array
(torch.from_numpy wants writable arrays) changes its own pages, never the cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ccp.data import schema
from ccp.data.dataset import Ragged, Split

# Impression arrays of a Split: name -> (dtype, shape of one row).
IMPRESSION_ARRAYS = {
    "click": (np.int8, ()),
    "purchase": (np.int8, ()),
    "sample_id": (np.int64, ()),
    "request": (np.int64, ()),
    "item_codes": (np.int64, (len(schema.IMPRESSION_SINGLE),)),
    "dense": (np.float32, (len(schema.DENSE_FEATURES),)),
}
TRUTH_ARRAYS = {"p_click": (np.float64, ()), "p_conversion": (np.float64, ())}
USER_CODES = ("user_codes", np.int64, (len(schema.USER_SINGLE),))
REQUEST_KEY = "request_key"


def ragged_names(prefix: str, field: str) -> dict[str, tuple]:
    """File stems of one ragged field: offsets (one more than rows), codes, weights."""
    return {"offsets": (f"{prefix}_{field}_offsets", np.int64),
            "codes": (f"{prefix}_{field}_codes", np.int64),
            "weights": (f"{prefix}_{field}_weights", np.float32)}


class NpyAppender:
    """A .npy file grown by appending rows; the header gets the row count on close()."""

    def __init__(self, path: Path, dtype, row_shape: tuple = ()):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(row_shape)
        self.rows = 0
        self._file = open(self.path, "wb")
        self._header_bytes = self._write_header()

    def _write_header(self) -> int:
        self._file.seek(0)
        np.lib.format.write_array_header_1_0(self._file, {
            "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
            "shape": (self.rows, *self.row_shape)})
        return self._file.tell()

    def append(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        if values.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: rows of shape {values.shape[1:]}, "
                             f"expected {self.row_shape}")
        if values.size:
            self._file.write(memoryview(values).cast("B"))
        self.rows += len(values)

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.flush()
        if self._write_header() != self._header_bytes:  # cannot happen below 10^21 rows
            raise RuntimeError(f"{self.path}: .npy header changed length")
        self._file.flush()
        # On disk before the folder's manifest is: a power cut must not leave a manifest
        # that vouches for arrays whose pages never reached the disk.
        os.fsync(self._file.fileno())
        self._file.close()


class RaggedAppender:
    """Appends CSR lists (local offsets from 0) as three growing arrays.

    open_array(stem, dtype) makes each of them: an NpyAppender, or an array_store.ArrayList."""

    def __init__(self, open_array, prefix: str, field: str):
        names = ragged_names(prefix, field)
        self.offsets, self.codes, self.weights = (open_array(*names[part])
                                                  for part in ("offsets", "codes", "weights"))
        self.offsets.append(np.zeros(1, dtype=np.int64))
        self.total = 0

    def append(self, ragged: Ragged) -> None:
        self.offsets.append(ragged.offsets[1:] - ragged.offsets[0] + self.total)
        self.codes.append(ragged.codes)
        self.weights.append(ragged.weights)
        self.total += int(ragged.offsets[-1] - ragged.offsets[0])

    def close(self) -> None:
        for part in (self.offsets, self.codes, self.weights):
            part.close()


def _open(folder: Path, stem: str) -> np.ndarray:
    # np.asarray drops the np.memmap subclass but keeps the mapping.
    return np.asarray(np.load(folder / f"{stem}.npy", mmap_mode="c"))


def npy_reader(root: Path):
    """folder -> (stem -> that folder's .npy array, memory-mapped): assemble_splits' reader."""
    return lambda folder: (lambda stem: _open(Path(root) / folder, stem))


def _ragged(array_of, prefix: str, field: str) -> Ragged:
    names = ragged_names(prefix, field)
    return Ragged(*(array_of(names[part][0]) for part in ("offsets", "codes", "weights")))


def _requests(array_of) -> dict:
    """The request table of a folder: request_key, user_codes, user_multi."""
    return {"request_key": array_of(REQUEST_KEY),
            "user_codes": array_of(USER_CODES[0]),
            "user_multi": {f: _ragged(array_of, "user", f) for f in schema.USER_MULTI}}


def _split(name: str, array_of, requests: dict, has_truth: bool) -> Split:
    arrays = {stem: array_of(stem) for stem in IMPRESSION_ARRAYS}
    truth = {stem: array_of(stem) if has_truth else None for stem in TRUTH_ARRAYS}
    return Split(name=name, **arrays,
                 item_multi={f: _ragged(array_of, "item", f) for f in schema.ITEM_MULTI},
                 **requests, **truth)


def assemble_splits(layout: dict, has_truth: dict, reader) -> dict[str, Split]:
    """The Splits of an encoding: layout maps a split to its folder and its request table's
    folder ({"folder": ..., "requests": ...}); reader(folder) gives that folder's arrays by
    stem. Splits that name one request folder share one request table."""
    requests, splits = {}, {}
    for label, where in layout.items():
        if where["requests"] not in requests:
            requests[where["requests"]] = _requests(reader(where["requests"]))
        splits[label] = _split(label, reader(where["folder"]), requests[where["requests"]],
                               has_truth[label])
    return splits


def is_memory_mapped(array) -> bool:
    """True when `array` (or the array it views) is backed by a memory-mapped file."""
    import mmap

    base = array
    while base is not None:
        if isinstance(base, (np.memmap, mmap.mmap)):
            return True
        base = getattr(base, "base", None)
    return False
