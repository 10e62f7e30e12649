"""Stage 2 of data preparation: raw-id tables -> model-ready arrays, batch by batch.

One encoder serves both forms of the result: in memory (`encode_dataset`: every table read as
one batch, arrays kept in memory) and out of core (ccp.data.stream_encode: Parquet record
batches, arrays appended to .npy files), so the two are equal by construction.

Everything fitted here (vocabularies, dense scaling) is fitted on the train split only, so
nothing from validation or test leaks into features. Rare ids (< min_count train occurrences)
and ids unseen in train share one reserved code; an absent field has its own reserved code.

Passes, each one read of one table:
  1. train skeleton: label filter and request join; impression id counts; kept impressions per
     request; range of the combination values.
  2. train common: user id counts (a user id counts once per kept impression of its request);
     per-request behaviour-list statistics (dense features) and their range.
     -> vocabularies and the dense min-max scaling.
  3. each common table: the request table (user codes and lists), written once.
  4. each skeleton table: impression arrays; the official test file is halved into validation
     and test by the request-key rule of ccp.data.split.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ccp.data import schema
from ccp.data.array_store import MemoryStore
from ccp.data.dataset import Dataset, Ragged
from ccp.data.id_tables import (
    KeyIndex,
    ParquetSource,
    TableSource,
    TruthReader,
    ids,
    ragged_raw,
    values,
)
from ccp.data.npy_cache import (
    IMPRESSION_ARRAYS,
    REQUEST_KEY,
    TRUTH_ARRAYS,
    USER_CODES,
    assemble_splits,
)
from ccp.data.split import in_test_half
from ccp.data.vocabulary import IdCounts

Source = ParquetSource | TableSource
N_USER_DENSE = 2 * len(schema.USER_MULTI)  # mean weight and log length per behaviour list


@dataclass(frozen=True)
class PrepSettings:
    """Preparation settings; part of the data fingerprint."""

    min_count: int = 10
    keep_purchase_without_click: bool = False

    def as_dict(self) -> dict:
        return {"min_count": self.min_count,
                "keep_purchase_without_click": self.keep_purchase_without_click}

    def digest(self) -> str:
        """8 hex digits naming these settings (in fingerprints and encoded-cache folders)."""
        text = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


@dataclass
class RawPart:
    """One skeleton table and its common table (schema.py's cache layout), in memory."""

    skeleton: pa.Table
    common: pa.Table
    source: str  # file name(s), for messages
    truth: pa.Table | None = None  # sample_id, p_click, p_conversion (synthetic only)

    def pair(self, name: str, splits: tuple[str, ...]) -> TablePair:
        truth = TableSource(self.truth) if self.truth is not None else None
        return TablePair(name, TableSource(self.skeleton), TableSource(self.common), truth,
                         self.source, splits)


@dataclass
class TablePair:
    """A skeleton source with its common source (and true probabilities), encoded into one
    split, or into two (validation, test) halved by request key."""

    name: str  # names its request table: requests-{name}
    skeleton: Source
    common: Source
    truth: Source | None
    source: str  # the skeleton file's name, for messages
    splits: tuple[str, ...]


def layout(pairs: list[TablePair]) -> dict:
    """Split -> its folder and its request table's folder."""
    return {label: {"folder": label, "requests": f"requests-{pair.name}"}
            for pair in pairs for label in pair.splits}


class _Range:
    """Column-wise min and max over batches (float32)."""

    def __init__(self, width: int):
        self.low = np.full(width, np.inf, dtype=np.float32)
        self.high = np.full(width, -np.inf, dtype=np.float32)
        self.rows = 0

    def add(self, batch: np.ndarray) -> None:
        if len(batch):
            self.low = np.minimum(self.low, batch.min(axis=0))
            self.high = np.maximum(self.high, batch.max(axis=0))
            self.rows += len(batch)


def _label_filter(table: pa.Table, settings: PrepSettings) -> tuple[np.ndarray, np.ndarray]:
    """(keep mask, purchase-without-click mask) of a skeleton batch."""
    click = table.column("click").to_numpy()
    purchase = table.column("purchase").to_numpy()
    pwc = (purchase == 1) & (click == 0)
    keep = np.ones(len(click), dtype=bool) if settings.keep_purchase_without_click else ~pwc
    return keep, pwc


def _user_dense(common: pa.Table) -> tuple[np.ndarray, dict[str, tuple]]:
    """Per-request dense statistics (n, 8) and the raw behaviour lists of a common batch."""
    lists = {f: ragged_raw(common, f) for f in schema.USER_MULTI}
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


class Encoder:
    def __init__(self, settings: PrepSettings, progress: bool = False):
        self.settings = settings
        self.progress = _Progress(progress)

    # -- fitting on train

    def fit(self, train: TablePair, keys: KeyIndex) -> None:
        started = time.perf_counter()
        counts = {f: IdCounts() for f in schema.ALL_FIELDS}
        per_request = np.zeros(len(keys), dtype=np.int64)
        combination = _Range(len(schema.COMBINATION))
        rows = 0
        columns = list(schema.SKELETON_BASE_COLUMNS) + list(schema.IMPRESSION_SINGLE) + [
            f"{f}_value" for f in schema.COMBINATION] + list(schema.ITEM_MULTI)
        for table in train.skeleton.batches(columns):
            keep, _ = _label_filter(table, self.settings)
            rows += table.num_rows
            per_request += np.bincount(keys.rows(table)[keep], minlength=len(keys))
            for f in schema.IMPRESSION_SINGLE:
                counts[f].add(ids(table, f)[keep])
            for f in schema.ITEM_MULTI:
                list_ids = table.column(f).combine_chunks()
                list_ids = pc.fill_null(list_ids, pa.scalar([], type=list_ids.type))
                lengths = pc.list_value_length(list_ids).to_numpy(zero_copy_only=False)
                flat = list_ids.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
                counts[f].add(flat[np.repeat(keep, lengths)])
            combination.add(np.stack([values(table, f"{f}_value")[keep]
                                      for f in schema.COMBINATION], axis=1))
        self.progress.say(f"counted {train.source}", rows, time.perf_counter() - started)

        started = time.perf_counter()
        user_range = _Range(N_USER_DENSE)
        start = 0
        columns = list(schema.USER_SINGLE) + [c for f in schema.USER_MULTI
                                              for c in (f, f"{f}_value")]
        for table in train.common.batches(columns):
            weight = per_request[start:start + table.num_rows]
            start += table.num_rows
            for f in schema.USER_SINGLE:
                counts[f].add(ids(table, f), weight)
            dense, lists = _user_dense(table)
            for f in schema.USER_MULTI:
                offsets, list_ids, _ = lists[f]
                counts[f].add(list_ids, np.repeat(weight, np.diff(offsets)))
            user_range.add(dense[weight > 0])  # the range is over kept impressions' requests
        self.progress.say(f"counted the common table of {train.source}", start,
                          time.perf_counter() - started)

        self.vocabs = {f: counts[f].vocabulary(self.settings.min_count)
                       for f in schema.ALL_FIELDS}
        if combination.rows:
            low = np.concatenate([combination.low, user_range.low])
            high = np.concatenate([combination.high, user_range.high])
            span = high - low
            self.low, self.span = low, np.where(span > 0, span, 1.0)
        else:  # no train rows: no scaling
            self.low, self.span = 0.0, 1.0

    # -- writing

    def write_requests(self, pair: TablePair, keys: KeyIndex, store) -> np.ndarray:
        """Encode one common table into the store; return its per-request dense statistics."""
        started = time.perf_counter()
        folder = f"requests-{pair.name}"
        codes = store.array(folder, *USER_CODES)
        multi = {f: store.ragged(folder, "user", f) for f in schema.USER_MULTI}
        dense_parts = [np.zeros((0, N_USER_DENSE), dtype=np.float32)]
        try:
            for table in pair.common.batches():
                codes.append(np.stack([self.vocabs[f].encode(ids(table, f))
                                       for f in schema.USER_SINGLE], axis=1).reshape(
                                           table.num_rows, len(schema.USER_SINGLE)))
                dense, lists = _user_dense(table)
                dense_parts.append(dense)
                for f in schema.USER_MULTI:
                    offsets, list_ids, weights = lists[f]
                    multi[f].append(Ragged(offsets, self.vocabs[f].encode(list_ids), weights))
        finally:
            codes.close()
            for appender in multi.values():
                appender.close()
        store.save(folder, REQUEST_KEY, keys.keys.astype(str))
        self.progress.say(f"encoded the common table of {pair.source}", codes.rows,
                          time.perf_counter() - started)
        return np.concatenate(dense_parts)

    def write_impressions(self, pair: TablePair, keys: KeyIndex, user_dense: np.ndarray,
                          store, half: np.ndarray | None) -> dict:
        """Encode one skeleton table into one split, or two (valid/test by `half`)."""
        started = time.perf_counter()
        truth = TruthReader(pair.truth, pair.source)
        arrays = dict(IMPRESSION_ARRAYS, **(TRUTH_ARRAYS if pair.truth is not None else {}))
        writers = {}
        for label in pair.splits:
            writers[label] = {stem: store.array(label, stem, dtype, shape)
                              for stem, (dtype, shape) in arrays.items()}
            writers[label].update({f"item_{f}": store.ragged(label, "item", f)
                                   for f in schema.ITEM_MULTI})
        stats = {label: {"rows": 0, "pwc": 0, "clicks": 0, "purchases": 0, "conversions": 0,
                         "requests": np.zeros(len(keys), dtype=bool)} for label in pair.splits}
        rows = 0
        try:
            for table in pair.skeleton.batches():
                rows += table.num_rows
                keep, pwc = _label_filter(table, self.settings)
                request = keys.rows(table)
                side = (np.zeros(table.num_rows, dtype=np.int64) if half is None
                        else half[request].astype(np.int64))
                batch = self._encode_batch(table, request, user_dense, truth)
                for i, label in enumerate(pair.splits):  # valid: half False, test: True
                    mine = side == i
                    stats[label]["pwc"] += int((pwc & mine).sum())
                    rows_out = np.flatnonzero(keep & mine)
                    self._append(writers[label], batch, rows_out, stats[label])
        finally:
            for group in writers.values():
                for writer in group.values():
                    writer.close()
        self.progress.say(f"encoded {pair.source}", rows, time.perf_counter() - started)
        return stats

    def _encode_batch(self, table: pa.Table, request: np.ndarray, user_dense: np.ndarray,
                      truth: TruthReader) -> dict:
        """Every impression array of a batch, before the label filter and the halving."""
        raw_dense = np.concatenate(
            [np.stack([values(table, f"{f}_value") for f in schema.COMBINATION], axis=1),
             user_dense[request]], axis=1).astype(np.float32)
        sample_id = table.column("sample_id").to_numpy().astype(np.int64)
        batch = {
            "click": table.column("click").to_numpy().astype(np.int8),
            "purchase": table.column("purchase").to_numpy().astype(np.int8),
            "sample_id": sample_id,
            "request": request,
            "item_codes": np.stack([self.vocabs[f].encode(ids(table, f))
                                    for f in schema.IMPRESSION_SINGLE], axis=1),
            "dense": np.clip((raw_dense - self.low) / self.span, 0.0, 1.0).astype(np.float32),
        }
        for f in schema.ITEM_MULTI:
            offsets, list_ids, weights = ragged_raw(table, f)
            batch[f"item_{f}"] = Ragged(offsets, self.vocabs[f].encode(list_ids), weights)
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

    def encode(self, pairs: list[TablePair], store) -> dict:
        """Fit on the first pair (its split must be train), write every pair into `store`;
        return the data set's info (counts, vocabulary sizes, scaling)."""
        if pairs[0].splits != ("train",):
            raise ValueError(f"the encoder fits on train first, not on {pairs[0].splits}")
        stats = {}
        for pair in pairs:
            keys = KeyIndex(pair.common, pair.source)
            if pair is pairs[0]:
                self.fit(pair, keys)
            user_dense = self.write_requests(pair, keys, store)
            half = in_test_half(keys.keys) if len(pair.splits) == 2 else None
            stats.update(self.write_impressions(pair, keys, user_dense, store, half))
            del keys, user_dense
        info = {"purchase_without_click": {s: stats[s]["pwc"] for s in stats}}
        info["settings"] = self.settings.as_dict()
        info["rows"] = {s: stats[s]["rows"] for s in stats}
        info["requests"] = {s: int(stats[s]["requests"].sum()) for s in stats}
        for key in ("clicks", "purchases", "conversions"):
            info[key] = {s: stats[s][key] for s in stats}
        info["vocab_sizes"] = {f: v.size for f, v in self.vocabs.items()}
        info["dense_scaling"] = {"fitted_on": "train", "min": np.atleast_1d(self.low).tolist(),
                                 "span": np.atleast_1d(self.span).tolist()}
        return info


def encode_dataset(name: str, fingerprint: str, pairs: list[TablePair],
                   settings: PrepSettings = PrepSettings(), info: dict | None = None) -> Dataset:
    """The data set encoded in memory (each source read as it comes: RawPart.pair reads a
    whole table as one batch)."""
    store = MemoryStore()
    encoded = Encoder(settings).encode(pairs, store)
    has_truth = {label: pair.truth is not None for pair in pairs for label in pair.splits}
    splits = assemble_splits(layout(pairs), has_truth, store.reader)
    return Dataset(name=name, fingerprint=fingerprint, train=splits["train"],
                   valid=splits["valid"], test=splits["test"],
                   vocab_sizes=dict(encoded["vocab_sizes"]), info={**(info or {}), **encoded})
