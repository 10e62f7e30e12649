"""Stage 2 out of core: the Parquet cache -> an encoded cache of .npy files, memory-mapped.

The encoder is ccp.data.encode's, the one the in-memory encoding runs; here it reads the
Parquet files in record batches and appends every output array to its .npy file as it is
produced, so memory holds a few batches, the request-key index of one split and per-id counts
(which grow with the number of distinct ids, not of impressions).

The folder is built under a temporary name and renamed when complete; `manifest.json`, written
last, ties it to the raw cache's fingerprint and the settings, so an interrupted or stale
encoding is never taken for a current one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from ccp.atomic import fsync_path, write_json
from ccp.data import schema
from ccp.data.array_store import NpyStore
from ccp.data.dataset import Dataset
from ccp.data.encode import Encoder, PrepSettings, TablePair, layout
from ccp.data.id_tables import ParquetSource
from ccp.data.npy_cache import assemble_splits, npy_reader
from ccp.folder_lock import ENCODING, REPLACED, folder_lock

FORMAT = 2  # 2: behaviour-list mean weights summed in float64
MANIFEST = "manifest.json"
SKELETON_BATCH_ROWS = 1 << 18  # ~25 MB of decoded skeleton columns per batch
COMMON_BATCH_ROWS = 1 << 12  # ~500 ids per request: ~25 MB of decoded lists per batch


def encoded_dir(cache_dir: Path, settings: PrepSettings) -> Path:
    return Path(cache_dir) / f"encoded-{settings.digest()}"


def parquet_pairs(cache_dir: Path, data_dir: Path, skeleton_batch_rows: int | None = None,
                  common_batch_rows: int | None = None) -> list[TablePair]:
    """The train file and the test file (halved into validation and test) of a Parquet cache,
    read in record batches."""
    skeleton_rows = skeleton_batch_rows or SKELETON_BATCH_ROWS
    common_rows = common_batch_rows or COMMON_BATCH_ROWS
    pairs = []
    for split, splits in (("train", ("train",)), ("test", ("valid", "test"))):
        truth = Path(data_dir) / f"truth_{split}.parquet"
        pairs.append(TablePair(
            split, ParquetSource(Path(cache_dir) / f"skeleton_{split}.parquet", skeleton_rows),
            ParquetSource(Path(cache_dir) / f"common_{split}.parquet", common_rows),
            ParquetSource(truth, skeleton_rows) if truth.exists() else None,
            schema.skeleton_name(split), splits))
    return pairs


def encode_to(out: Path, pairs: list[TablePair], settings: PrepSettings, fingerprint: str,
              raw_fingerprint: str, progress: bool = True) -> dict:
    """Write the encoded cache into `out` (a new folder); return its manifest."""
    started = time.perf_counter()
    info = Encoder(settings, progress).encode(pairs, NpyStore(out))
    return {
        "format": FORMAT, "fingerprint": fingerprint, "raw_fingerprint": raw_fingerprint,
        "settings": settings.as_dict(),
        "splits": layout(pairs),
        "has_truth": {label: pair.truth is not None for pair in pairs for label in pair.splits},
        "vocab_sizes": info["vocab_sizes"],
        "info": info,
        "seconds": round(time.perf_counter() - started, 2),
    }


# ---------------------------------------------------------------- the cache as a whole


def read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def is_current(folder: Path, fingerprint: str) -> bool:
    manifest = read_manifest(folder)
    return bool(manifest and manifest.get("format") == FORMAT
                and manifest.get("fingerprint") == fingerprint)


def build(cache_dir: Path, data_dir: Path, settings: PrepSettings, fingerprint: str,
          raw_fingerprint: str, progress: bool = True, **batch_rows) -> Path:
    """(Re)build the encoded cache of `cache_dir` for `settings`; return its folder.

    Under the cache folder's lock. The folder is built under a work name and renamed into
    place; an older folder is first renamed away (one atomic step), never deleted in place,
    where a kill midway could leave a manifest beside missing arrays."""
    final = encoded_dir(cache_dir, settings)
    with folder_lock(cache_dir, progress):
        work = Path(tempfile.mkdtemp(prefix=ENCODING, dir=cache_dir))
        old = Path(tempfile.mkdtemp(prefix=REPLACED, dir=cache_dir))
        try:
            manifest = encode_to(work, parquet_pairs(cache_dir, data_dir, **batch_rows),
                                 settings, fingerprint, raw_fingerprint, progress)
            write_json(work / MANIFEST, manifest, indent=1, sort_keys=True)
            if final.exists():
                os.replace(final, old)
            os.replace(work, final)
            fsync_path(final.parent)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_encoded(folder: Path, name: str, info: dict | None = None) -> Dataset:
    """The Dataset of an encoded cache folder, every array memory-mapped."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"{folder}: no complete encoded cache ({MANIFEST} missing)")
    splits = assemble_splits(manifest["splits"], manifest["has_truth"], npy_reader(folder))
    merged = {**(info or {}), **manifest["info"],
              "encoded_cache": {"folder": str(folder), "memory_mapped": True,
                                "encode_seconds": manifest["seconds"]}}
    return Dataset(name=name, fingerprint=manifest["fingerprint"], train=splits["train"],
                   valid=splits["valid"], test=splits["test"],
                   vocab_sizes=dict(manifest["vocab_sizes"]), info=merged)


def encoded_dataset(cache_dir: Path, data_dir: Path, settings: PrepSettings, fingerprint: str,
                    raw_fingerprint: str, name: str, info: dict | None = None,
                    progress: bool = True, **batch_rows) -> Dataset:
    """The memory-mapped Dataset of a Parquet cache, encoding it first unless current."""
    folder = encoded_dir(cache_dir, settings)
    with folder_lock(cache_dir, progress):  # mapped before another process may replace it
        if not is_current(folder, fingerprint):
            build(cache_dir, data_dir, settings, fingerprint, raw_fingerprint, progress,
                  **batch_rows)
        return load_encoded(folder, name, info)
