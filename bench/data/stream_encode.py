"""Stage 2 out of core: the Parquet cache -> an encoded cache of .npy files, memory-mapped.

The result equals `encode.encode_dataset` array for array (tests/test_stream_encode.py checks
it): same vocabularies and dense scaling, fitted on train only, same label filter, same split
rule. But the raw tables are read in Parquet record batches and every output array is appended
to its .npy file as it is produced, so memory holds a few batches, the request-key index of one
split and per-id counts (which grow with the number of distinct ids, not of impressions).

Passes, each one read of one Parquet file in batches:
  1. skeleton_train: label filter and request join; impression id counts; kept impressions per
     request; range of the combination values.
  2. common_train: user id counts (a user id counts once per kept impression of its request,
     as in memory); per-request behaviour-list statistics (dense features) and their range.
     -> vocabularies and the dense min-max scaling.
  3. common_{train,test}: the request tables (user codes and lists), written once per file.
  4. skeleton_{train,test}: impression arrays; the test file is halved into validation and
     test on the fly by the request-key rule of bench.data.split.

The folder is built under a temporary name and renamed when complete; `manifest.json`, written
last, ties it to the raw cache's fingerprint and the settings, so an interrupted or stale
encoding is never taken for a current one.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.atomic import fsync_path, write_json
from bench.data import schema
from bench.data.dataset import Dataset, Ragged
from bench.data.encode import PrepSettings, Vocabulary, _ids, _ragged_raw, _values
from bench.data.npy_cache import (
    IMPRESSION_ARRAYS,
    REQUEST_KEY,
    TRUTH_ARRAYS,
    USER_CODES,
    NpyAppender,
    RaggedAppender,
    load_requests,
    load_split,
)
from bench.data.split import in_test_half
from bench.folder_lock import ENCODING, REPLACED, folder_lock

FORMAT = 2  # 2: behaviour-list mean weights summed in float64
MANIFEST = "manifest.json"
SKELETON_BATCH_ROWS = 1 << 18  # ~25 MB of decoded skeleton columns per batch
COMMON_BATCH_ROWS = 1 << 12  # ~500 ids per request: ~25 MB of decoded lists per batch
N_USER_DENSE = 2 * len(schema.USER_MULTI)  # mean weight and log length per behaviour list


def encoded_dir(cache_dir: Path, settings: PrepSettings) -> Path:
    text = json.dumps(settings.as_dict(), sort_keys=True)
    import hashlib

    return Path(cache_dir) / f"encoded-{hashlib.blake2b(text.encode(), digest_size=4).hexdigest()}"


# ---------------------------------------------------------------- counting


class _Counts:
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


class _Range:
    """Column-wise min and max over batches (float32, as the in-memory scaling)."""

    def __init__(self, width: int):
        self.low = np.full(width, np.inf, dtype=np.float32)
        self.high = np.full(width, -np.inf, dtype=np.float32)
        self.rows = 0

    def add(self, values: np.ndarray) -> None:
        if len(values):
            self.low = np.minimum(self.low, values.min(axis=0))
            self.high = np.maximum(self.high, values.max(axis=0))
            self.rows += len(values)


# ---------------------------------------------------------------- reading


def _batches(path: Path, batch_rows: int, columns=None):
    """Record batches of a Parquet file, each as a one-chunk Table (encode.py's helpers).

    pre_buffer=False: by default Arrow reads ahead the column chunks of every row group, so
    its memory grew with the file (measured: +58 MB of peak per +2M impressions)."""
    reader = pq.ParquetFile(path, pre_buffer=False)
    for batch in reader.iter_batches(batch_size=batch_rows, columns=columns):
        yield pa.Table.from_batches([batch])


class _KeyIndex:
    """Request key -> row of the common table of one split (the one thing kept per request)."""

    def __init__(self, common_path: Path, source: str):
        keys = pq.read_table(common_path, columns=["request_key"]).column("request_key")
        self.keys = keys.to_numpy(zero_copy_only=False)
        self.index = pd.Index(self.keys)
        if not self.index.is_unique:
            dup = self.index[self.index.duplicated()][0]
            raise ValueError(f"{source}: request key {dup!r} has more than one "
                             "common-features line")
        self.source = source

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, table: pa.Table) -> np.ndarray:
        """Common-table row of every impression of `table`; a clear error for a missing key."""
        keys = table.column("request_key").combine_chunks()
        # Impressions come in runs of one key: look up each distinct key of the batch once.
        encoded = pc.dictionary_encode(pc.fill_null(keys, ""))
        found = self.index.get_indexer(encoded.dictionary.to_numpy(zero_copy_only=False))
        request = found[encoded.indices.to_numpy()]
        if (request < 0).any():
            bad = int(np.flatnonzero(request < 0)[0])
            line = int(table.column("line")[bad].as_py())
            raise ValueError(f"{self.source} line {line}, field common_feature_index: request "
                             f"key {keys[bad].as_py()!r} has no common-features line")
        return request.astype(np.int64)


class _TruthReader:
    """True probabilities, read in step with the skeleton file they were generated with.

    Synthetic truth files list sample ids in skeleton order; if they do not (a lenient
    conversion skipped lines), the whole table is indexed by sample id instead."""

    def __init__(self, path: Path | None, source: str):
        self.path, self.source = path, source
        self._batches = _batches(path, SKELETON_BATCH_ROWS) if path else None
        self._buffer: pa.Table | None = None
        self._index: pd.DataFrame | None = None

    def _next_rows(self, n: int) -> pa.Table | None:
        parts, have = [], 0
        buffer = self._buffer
        while have < n:
            if buffer is None or buffer.num_rows == 0:
                buffer = next(self._batches, None)
                if buffer is None:
                    break
            take = min(n - have, buffer.num_rows)
            parts.append(buffer.slice(0, take))
            buffer = buffer.slice(take)
            have += take
        self._buffer = buffer
        return pa.concat_tables(parts) if have == n and parts else None

    def take(self, sample_id: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(p_click, p_conversion) of every skeleton row of a batch, in order."""
        if self.path is None:
            return None
        if self._index is None:
            rows = self._next_rows(len(sample_id)) if len(sample_id) else None
            if rows is not None and np.array_equal(
                    rows.column("sample_id").to_numpy(), sample_id):
                return (rows.column("p_click").to_numpy().astype(np.float64),
                        rows.column("p_conversion").to_numpy().astype(np.float64))
            if len(sample_id) == 0:
                return np.zeros(0), np.zeros(0)
            self._index = pd.read_parquet(self.path).set_index("sample_id")
        rows = self._index.index.get_indexer(sample_id)
        if (rows < 0).any():
            raise ValueError(f"{self.source}: true probabilities missing for sample_id "
                             f"{sample_id[rows < 0][0]}")
        return (self._index["p_click"].to_numpy(dtype=np.float64)[rows],
                self._index["p_conversion"].to_numpy(dtype=np.float64)[rows])


def _label_filter(table: pa.Table, settings: PrepSettings) -> tuple[np.ndarray, np.ndarray]:
    """(keep mask, purchase-without-click mask) of a skeleton batch, as encode._prepare."""
    click = table.column("click").to_numpy()
    purchase = table.column("purchase").to_numpy()
    pwc = (purchase == 1) & (click == 0)
    keep = np.ones(len(click), dtype=bool) if settings.keep_purchase_without_click else ~pwc
    return keep, pwc


def _user_dense(common: pa.Table) -> tuple[np.ndarray, dict[str, tuple]]:
    """Per-request dense statistics (n, 8) and the raw behaviour lists of a common batch."""
    lists = {f: _ragged_raw(common, f) for f in schema.USER_MULTI}
    raggeds = {f: Ragged(*lists[f]) for f in schema.USER_MULTI}
    cols = [raggeds[f].row_mean_weight() for f in schema.USER_MULTI]
    cols += [np.log1p(raggeds[f].lengths()).astype(np.float32) for f in schema.USER_MULTI]
    dense = (np.stack(cols, axis=1).astype(np.float32) if common.num_rows
             else np.zeros((0, N_USER_DENSE), dtype=np.float32))
    return dense, lists


class _Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.started = time.perf_counter()

    def say(self, what: str, rows: int, seconds: float) -> None:
        if self.enabled:
            total = time.perf_counter() - self.started
            print(f"encode: {what}: {rows:,} rows in {seconds:.1f} s "
                  f"({rows / max(seconds, 1e-9):,.0f} rows/s; {total:.0f} s so far)",
                  file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the passes


class StreamEncoder:
    def __init__(self, cache_dir: Path, data_dir: Path, settings: PrepSettings,
                 skeleton_batch_rows: int = SKELETON_BATCH_ROWS,
                 common_batch_rows: int = COMMON_BATCH_ROWS, progress: bool = True):
        self.cache_dir, self.data_dir = Path(cache_dir), Path(data_dir)
        self.settings = settings
        self.skeleton_rows, self.common_rows = skeleton_batch_rows, common_batch_rows
        self.progress = _Progress(progress)
        self.info: dict = {}

    def _skeleton(self, split: str) -> Path:
        return self.cache_dir / f"skeleton_{split}.parquet"

    def _common(self, split: str) -> Path:
        return self.cache_dir / f"common_{split}.parquet"

    def _truth(self, split: str) -> Path | None:
        path = self.data_dir / f"truth_{split}.parquet"
        return path if path.exists() else None

    # -- fitting on train

    def fit(self, keys: _KeyIndex) -> None:
        started = time.perf_counter()
        counts = {f: _Counts() for f in schema.ALL_FIELDS}
        per_request = np.zeros(len(keys), dtype=np.int64)
        combination = _Range(len(schema.COMBINATION))
        pwc_total, rows = 0, 0
        columns = list(schema.SKELETON_BASE_COLUMNS) + list(schema.IMPRESSION_SINGLE) + [
            f"{f}_value" for f in schema.COMBINATION] + list(schema.ITEM_MULTI)
        for table in _batches(self._skeleton("train"), self.skeleton_rows, columns):
            keep, pwc = _label_filter(table, self.settings)
            pwc_total += int(pwc.sum())
            rows += table.num_rows
            per_request += np.bincount(keys.rows(table)[keep], minlength=len(keys))
            for f in schema.IMPRESSION_SINGLE:
                counts[f].add(_ids(table, f)[keep])
            for f in schema.ITEM_MULTI:
                ids = table.column(f).combine_chunks()
                ids = pc.fill_null(ids, pa.scalar([], type=ids.type))
                lengths = pc.list_value_length(ids).to_numpy(zero_copy_only=False)
                flat = ids.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
                counts[f].add(flat[np.repeat(keep, lengths)])
            combination.add(np.stack([_values(table, f"{f}_value")[keep]
                                      for f in schema.COMBINATION], axis=1))
        self.info["purchase_without_click"] = {"train": pwc_total}
        self.progress.say("counted skeleton_train", rows, time.perf_counter() - started)

        started = time.perf_counter()
        user_range = _Range(N_USER_DENSE)
        start = 0
        columns = list(schema.USER_SINGLE) + [c for f in schema.USER_MULTI
                                              for c in (f, f"{f}_value")]
        for table in _batches(self._common("train"), self.common_rows, columns):
            weight = per_request[start:start + table.num_rows]
            start += table.num_rows
            for f in schema.USER_SINGLE:
                counts[f].add(_ids(table, f), weight)
            dense, lists = _user_dense(table)
            for f in schema.USER_MULTI:
                offsets, ids, _ = lists[f]
                counts[f].add(ids, np.repeat(weight, np.diff(offsets)))
            user_range.add(dense[weight > 0])  # in memory the range is over kept impressions
        self.progress.say("counted common_train", start, time.perf_counter() - started)

        self.vocabs = {f: counts[f].vocabulary(self.settings.min_count)
                       for f in schema.ALL_FIELDS}
        if combination.rows:
            low = np.concatenate([combination.low, user_range.low])
            high = np.concatenate([combination.high, user_range.high])
            span = high - low
            self.low, self.span = low, np.where(span > 0, span, 1.0)
        else:  # no train rows: encode_dataset's fallback
            self.low, self.span = 0.0, 1.0

    # -- writing

    def write_requests(self, split: str, keys: _KeyIndex, out: Path) -> np.ndarray:
        """Encode one common file to `out`; return its per-request dense statistics."""
        started = time.perf_counter()
        out.mkdir(parents=True)
        codes = NpyAppender(out / f"{USER_CODES[0]}.npy", USER_CODES[1], USER_CODES[2])
        multi = {f: RaggedAppender(out, "user", f) for f in schema.USER_MULTI}
        dense_parts = [np.zeros((0, N_USER_DENSE), dtype=np.float32)]
        try:
            for table in _batches(self._common(split), self.common_rows):
                codes.append(np.stack([self.vocabs[f].encode(_ids(table, f))
                                       for f in schema.USER_SINGLE], axis=1).reshape(
                                           table.num_rows, len(schema.USER_SINGLE)))
                dense, lists = _user_dense(table)
                dense_parts.append(dense)
                for f in schema.USER_MULTI:
                    offsets, ids, weights = lists[f]
                    multi[f].append(Ragged(offsets, self.vocabs[f].encode(ids), weights))
        finally:
            codes.close()
            for appender in multi.values():
                appender.close()
        np.save(out / f"{REQUEST_KEY}.npy", keys.keys.astype(str))
        self.progress.say(f"encoded common_{split}", codes.rows, time.perf_counter() - started)
        return np.concatenate(dense_parts)

    def write_impressions(self, split: str, keys: _KeyIndex, user_dense: np.ndarray,
                          outputs: dict[str, Path], half: np.ndarray | None) -> dict:
        """Encode one skeleton file into one folder (train) or two (valid/test by `half`)."""
        started = time.perf_counter()
        truth = _TruthReader(self._truth(split), schema.skeleton_name(split))
        writers = {}
        for label, folder in outputs.items():
            folder.mkdir(parents=True)
            arrays = dict(IMPRESSION_ARRAYS, **(TRUTH_ARRAYS if truth.path else {}))
            writers[label] = {stem: NpyAppender(folder / f"{stem}.npy", dtype, shape)
                              for stem, (dtype, shape) in arrays.items()}
            writers[label].update({f"item_{f}": RaggedAppender(folder, "item", f)
                                   for f in schema.ITEM_MULTI})
        stats = {label: {"rows": 0, "pwc": 0, "clicks": 0, "purchases": 0, "conversions": 0,
                         "requests": np.zeros(len(keys), dtype=bool)} for label in outputs}
        labels = list(outputs)  # train; or valid (half False) and test (half True)
        rows = 0
        try:
            for table in _batches(self._skeleton(split), self.skeleton_rows):
                rows += table.num_rows
                keep, pwc = _label_filter(table, self.settings)
                request = keys.rows(table)
                side = (np.zeros(table.num_rows, dtype=np.int64) if half is None
                        else half[request].astype(np.int64))
                batch = self._encode_batch(table, request, user_dense, truth)
                for i, label in enumerate(labels):
                    mine = side == i
                    stats[label]["pwc"] += int((pwc & mine).sum())
                    rows_out = np.flatnonzero(keep & mine)
                    self._append(writers[label], batch, rows_out, stats[label])
        finally:
            for group in writers.values():
                for writer in group.values():
                    writer.close()
        self.progress.say(f"encoded skeleton_{split}", rows, time.perf_counter() - started)
        return stats

    def _encode_batch(self, table: pa.Table, request: np.ndarray, user_dense: np.ndarray,
                      truth: _TruthReader) -> dict:
        """Every impression array of a batch, before the label filter and the halving."""
        raw_dense = np.concatenate(
            [np.stack([_values(table, f"{f}_value") for f in schema.COMBINATION], axis=1),
             user_dense[request]], axis=1).astype(np.float32)
        sample_id = table.column("sample_id").to_numpy().astype(np.int64)
        batch = {
            "click": table.column("click").to_numpy().astype(np.int8),
            "purchase": table.column("purchase").to_numpy().astype(np.int8),
            "sample_id": sample_id,
            "request": request,
            "item_codes": np.stack([self.vocabs[f].encode(_ids(table, f))
                                    for f in schema.IMPRESSION_SINGLE], axis=1),
            "dense": np.clip((raw_dense - self.low) / self.span, 0.0, 1.0).astype(np.float32),
        }
        for f in schema.ITEM_MULTI:
            offsets, ids, weights = _ragged_raw(table, f)
            batch[f"item_{f}"] = Ragged(offsets, self.vocabs[f].encode(ids), weights)
        probabilities = truth.take(sample_id)
        if probabilities is not None:
            batch["p_click"], batch["p_conversion"] = probabilities
        return batch

    @staticmethod
    def _append(writers: dict, batch: dict, rows: np.ndarray, stats: dict) -> None:
        for stem, writer in writers.items():
            value = batch[stem]
            writer.append(value.take(rows) if isinstance(value, Ragged) else value[rows])
        click, purchase = batch["click"][rows], batch["purchase"][rows]
        stats["rows"] += len(rows)
        stats["clicks"] += int(click.sum())
        stats["purchases"] += int(purchase.sum())
        stats["conversions"] += int((click & purchase).sum())
        stats["requests"][batch["request"][rows]] = True

    # -- everything

    def encode(self, out: Path, fingerprint: str, raw_fingerprint: str) -> dict:
        """Write the encoded cache into `out` (a new folder); return its manifest."""
        started = time.perf_counter()
        train_keys = _KeyIndex(self._common("train"), schema.skeleton_name("train"))
        self.fit(train_keys)
        stats = {}
        user_dense = self.write_requests("train", train_keys, out / "requests-train")
        stats.update(self.write_impressions("train", train_keys, user_dense,
                                            {"train": out / "train"}, None))
        del train_keys, user_dense
        test_keys = _KeyIndex(self._common("test"), schema.skeleton_name("test"))
        user_dense = self.write_requests("test", test_keys, out / "requests-test")
        half = in_test_half(test_keys.keys)
        stats.update(self.write_impressions("test", test_keys, user_dense,
                                            {"valid": out / "valid", "test": out / "test"},
                                            half))
        info = self.info
        info["purchase_without_click"].update({s: stats[s]["pwc"] for s in ("valid", "test")})
        info["settings"] = self.settings.as_dict()
        info["rows"] = {s: stats[s]["rows"] for s in stats}
        info["requests"] = {s: int(stats[s]["requests"].sum()) for s in stats}
        for key in ("clicks", "purchases", "conversions"):
            info[key] = {s: stats[s][key] for s in stats}
        info["vocab_sizes"] = {f: v.size for f, v in self.vocabs.items()}
        info["dense_scaling"] = {"fitted_on": "train", "min": np.atleast_1d(self.low).tolist(),
                                 "span": np.atleast_1d(self.span).tolist()}
        return {
            "format": FORMAT, "fingerprint": fingerprint, "raw_fingerprint": raw_fingerprint,
            "settings": self.settings.as_dict(),
            "splits": {"train": {"folder": "train", "requests": "requests-train"},
                       "valid": {"folder": "valid", "requests": "requests-test"},
                       "test": {"folder": "test", "requests": "requests-test"}},
            "has_truth": {s: self._truth("train" if s == "train" else "test") is not None
                          for s in stats},
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
            encoder = StreamEncoder(cache_dir, data_dir, settings, progress=progress,
                                    **batch_rows)
            manifest = encoder.encode(work, fingerprint, raw_fingerprint)
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
    requests, splits = {}, {}
    for label, where in manifest["splits"].items():
        if where["requests"] not in requests:
            requests[where["requests"]] = load_requests(folder / where["requests"])
        splits[label] = load_split(label, folder / where["folder"], requests[where["requests"]],
                                   manifest["has_truth"][label])
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
