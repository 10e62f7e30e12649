"""Stage 2 of data preparation: raw-id tables -> model-ready `Dataset`.

Everything fitted here (vocabularies, dense scaling) is fitted on the train split only, so
nothing from validation or test leaks into features. Rare ids (< min_count train occurrences)
and ids unseen in train share one reserved code; an absent field has its own reserved code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bench.data import schema
from bench.data.dataset import Dataset, Ragged, Split


@dataclass(frozen=True)
class PrepSettings:
    """Preparation settings; part of the data fingerprint."""

    min_count: int = 10
    keep_purchase_without_click: bool = False

    def as_dict(self) -> dict:
        return {"min_count": self.min_count,
                "keep_purchase_without_click": self.keep_purchase_without_click}


@dataclass
class RawPart:
    """One split's raw-id tables (schema.py's cache layout) before encoding."""

    skeleton: pa.Table
    common: pa.Table
    source: str  # file name(s), for messages
    truth: pd.DataFrame | None = None  # sample_id, p_click, p_conversion (synthetic only)


class Vocabulary:
    """Kept raw ids of one field, sorted; code = FIRST_CODE + position."""

    def __init__(self, kept_ids: np.ndarray):
        self.kept_ids = np.sort(np.asarray(kept_ids, dtype=np.int64))

    @property
    def size(self) -> int:
        return schema.FIRST_CODE + len(self.kept_ids)

    @classmethod
    def fit(cls, ids: np.ndarray, counts_weight: np.ndarray | None, min_count: int):
        ids = np.asarray(ids, dtype=np.int64)
        present = ids >= 0
        ids = ids[present]
        if counts_weight is None:
            uniq, counts = np.unique(ids, return_counts=True)
        else:
            weight = np.asarray(counts_weight, dtype=np.int64)[present]
            uniq, inverse = np.unique(ids, return_inverse=True)
            counts = np.bincount(inverse, weights=weight, minlength=len(uniq))
        return cls(uniq[counts >= min_count])

    def encode(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if len(self.kept_ids) == 0:
            return np.where(ids < 0, schema.CODE_MISSING, schema.CODE_RARE).astype(np.int64)
        pos = np.searchsorted(self.kept_ids, ids)
        pos_clipped = np.minimum(pos, len(self.kept_ids) - 1)
        known = self.kept_ids[pos_clipped] == ids
        codes = np.where(known, pos_clipped + schema.FIRST_CODE, schema.CODE_RARE)
        return np.where(ids < 0, schema.CODE_MISSING, codes).astype(np.int64)


# ---- reading columns out of Arrow tables ----

def _ids(table: pa.Table, name: str) -> np.ndarray:
    """A single-valued id column with absent values as -1."""
    return pc.fill_null(table.column(name), -1).to_numpy().astype(np.int64)


def _values(table: pa.Table, name: str) -> np.ndarray:
    return pc.fill_null(table.column(name), 0.0).to_numpy().astype(np.float32)


def _ragged_raw(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, raw ids, weights) of a list column pair F / F_value."""
    ids = table.column(name).combine_chunks()
    weights = table.column(f"{name}_value").combine_chunks()
    if isinstance(ids, pa.ChunkedArray):  # an empty table combines to an empty chunked array
        ids = pa.array([], type=pa.list_(pa.int64()))
        weights = pa.array([], type=pa.list_(pa.float32()))
    ids = pc.fill_null(ids, pa.scalar([], type=ids.type))
    weights = pc.fill_null(weights, pa.scalar([], type=weights.type))
    offsets = ids.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    flat_ids = ids.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    flat_w = weights.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    if len(flat_w) != len(flat_ids):
        raise ValueError(f"column {name}: ids and weights have different lengths")
    return offsets, flat_ids, flat_w


# ---- the encoder ----

@dataclass
class _Prepared:
    """A part after label filtering and the request join, still in raw ids."""

    part: RawPart
    keep: np.ndarray  # bool over skeleton rows
    request: np.ndarray  # int64 row of the common table per kept impression


def _prepare(part: RawPart, settings: PrepSettings, info: dict, label: str) -> _Prepared:
    click = part.skeleton.column("click").to_numpy()
    purchase = part.skeleton.column("purchase").to_numpy()
    pwc = (purchase == 1) & (click == 0)
    info.setdefault("purchase_without_click", {})[label] = int(pwc.sum())
    keep = np.ones(len(click), dtype=bool) if settings.keep_purchase_without_click else ~pwc
    keys = part.skeleton.column("request_key").to_numpy(zero_copy_only=False)
    common_keys = part.common.column("request_key").to_numpy(zero_copy_only=False)
    index = pd.Index(common_keys)
    if not index.is_unique:
        dup = index[index.duplicated()][0]
        raise ValueError(f"{part.source}: request key {dup!r} has more than one "
                         "common-features line")
    request = index.get_indexer(keys)
    if (request < 0).any():
        bad = int(np.flatnonzero(request < 0)[0])
        line = int(part.skeleton.column("line")[bad].as_py())
        raise ValueError(f"{part.source} line {line}, field common_feature_index: request key "
                         f"{keys[bad]!r} has no common-features line")
    return _Prepared(part, keep, request[keep].astype(np.int64))


def _request_impressions(prep: _Prepared) -> np.ndarray:
    """How many kept impressions each request of the common table has."""
    return np.bincount(prep.request, minlength=prep.part.common.num_rows)


def fit_vocabularies(train: _Prepared, min_count: int) -> dict[str, Vocabulary]:
    """Count ids over train impressions: a user id counts once per impression of its request."""
    vocabs = {}
    skel, common = train.part.skeleton, train.part.common
    per_request = _request_impressions(train)
    for f in schema.USER_SINGLE:
        vocabs[f] = Vocabulary.fit(_ids(common, f), per_request, min_count)
    for f in schema.IMPRESSION_SINGLE:
        vocabs[f] = Vocabulary.fit(_ids(skel, f)[train.keep], None, min_count)
    for f in schema.USER_MULTI:
        offsets, ids, _ = _ragged_raw(common, f)
        vocabs[f] = Vocabulary.fit(ids, np.repeat(per_request, np.diff(offsets)), min_count)
    for f in schema.ITEM_MULTI:
        offsets, ids, _ = _ragged_raw(skel, f)
        row_kept = np.repeat(train.keep, np.diff(offsets))
        vocabs[f] = Vocabulary.fit(ids[row_kept], None, min_count)
    return vocabs


def _dense_raw(prep: _Prepared, user_multi: dict[str, Ragged]) -> np.ndarray:
    skel = prep.part.skeleton
    cols = [_values(skel, f"{f}_value")[prep.keep] for f in schema.COMBINATION]
    cols += [user_multi[f].row_mean_weight()[prep.request] for f in schema.USER_MULTI]
    cols += [np.log1p(user_multi[f].lengths()).astype(np.float32)[prep.request]
             for f in schema.USER_MULTI]
    return np.stack(cols, axis=1).astype(np.float32)


def _encode_split(name: str, prep: _Prepared, vocabs: dict[str, Vocabulary]) -> tuple:
    skel, common = prep.part.skeleton, prep.part.common
    keep = prep.keep
    item_codes = np.stack([vocabs[f].encode(_ids(skel, f)[keep])
                           for f in schema.IMPRESSION_SINGLE], axis=1)
    user_codes = np.stack([vocabs[f].encode(_ids(common, f)) for f in schema.USER_SINGLE],
                          axis=1)
    user_multi = {}
    for f in schema.USER_MULTI:
        offsets, ids, weights = _ragged_raw(common, f)
        user_multi[f] = Ragged(offsets, vocabs[f].encode(ids), weights)
    item_multi = {}
    for f in schema.ITEM_MULTI:
        offsets, ids, weights = _ragged_raw(skel, f)
        item_multi[f] = Ragged(offsets, vocabs[f].encode(ids), weights).take(np.flatnonzero(keep))
    keys = common.column("request_key").to_numpy(zero_copy_only=False).astype(str)
    sample_id = skel.column("sample_id").to_numpy().astype(np.int64)[keep]
    p_click = p_conversion = None
    truth = prep.part.truth
    if truth is not None:
        rows = pd.Index(truth["sample_id"].to_numpy()).get_indexer(sample_id)
        if (rows < 0).any():
            raise ValueError(f"{prep.part.source}: true probabilities missing for "
                             f"sample_id {sample_id[rows < 0][0]}")
        p_click = truth["p_click"].to_numpy(dtype=np.float64)[rows]
        p_conversion = truth["p_conversion"].to_numpy(dtype=np.float64)[rows]
    split = Split(
        name=name,
        click=skel.column("click").to_numpy().astype(np.int8)[keep],
        purchase=skel.column("purchase").to_numpy().astype(np.int8)[keep],
        sample_id=sample_id,
        request=prep.request,
        item_codes=item_codes,
        item_multi=item_multi,
        dense=np.empty((0, 0), dtype=np.float32),  # filled once scaling is fitted
        request_key=keys,
        user_codes=user_codes,
        user_multi=user_multi,
        p_click=p_click,
        p_conversion=p_conversion,
    )
    return split, _dense_raw(prep, user_multi)


def encode_dataset(name: str, fingerprint: str, train: RawPart, valid: RawPart, test: RawPart,
                   settings: PrepSettings = PrepSettings(), info: dict | None = None) -> Dataset:
    info = dict(info or {})
    prepared = {label: _prepare(part, settings, info, label)
                for label, part in (("train", train), ("valid", valid), ("test", test))}
    vocabs = fit_vocabularies(prepared["train"], settings.min_count)
    splits, dense = {}, {}
    for label, prep in prepared.items():
        splits[label], dense[label] = _encode_split(label, prep, vocabs)
    # Min-max scaling fitted on train only; values outside the train range are clipped.
    low = dense["train"].min(axis=0) if len(dense["train"]) else 0.0
    span = (dense["train"].max(axis=0) - low) if len(dense["train"]) else 1.0
    span = np.where(span > 0, span, 1.0)
    for label, split in splits.items():
        split.dense = np.clip((dense[label] - low) / span, 0.0, 1.0).astype(np.float32)
    info["settings"] = settings.as_dict()
    info["rows"] = {label: len(s) for label, s in splits.items()}
    info["requests"] = {label: int(len(np.unique(s.request))) for label, s in splits.items()}
    info["clicks"] = {label: int(s.click.sum()) for label, s in splits.items()}
    info["purchases"] = {label: int(s.purchase.sum()) for label, s in splits.items()}
    info["conversions"] = {label: int((s.click & s.purchase).sum())
                           for label, s in splits.items()}
    info["vocab_sizes"] = {f: v.size for f, v in vocabs.items()}
    info["dense_scaling"] = {"fitted_on": "train", "min": np.atleast_1d(low).tolist(),
                             "span": np.atleast_1d(span).tolist()}
    return Dataset(name=name, fingerprint=fingerprint, train=splits["train"],
                   valid=splits["valid"], test=splits["test"],
                   vocab_sizes={f: v.size for f, v in vocabs.items()}, info=info)
