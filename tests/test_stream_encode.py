"""The out-of-core encoding: the in-memory one's encoder over Parquet batches, giving the same
data set, memory-mapped, never half-built."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from ccp.data import stream_encode
from ccp.data.chunks import chunk_bounds, chunk_rows_for
from ccp.data.dataset import Ragged
from ccp.data.encode import Encoder, PrepSettings
from ccp.data.id_tables import ParquetSource
from ccp.data.npy_cache import NpyAppender, is_memory_mapped
from ccp.data.vocabulary import IdCounts, Vocabulary

# Small batches so that every pass crosses many batch boundaries and the id counts merge.
BATCHES = {"skeleton_batch_rows": 997, "common_batch_rows": 53}


def assert_same(a, b, path="data set"):
    """Equal array by array (dtype, shape, values), recursing into Splits, Raggeds, dicts."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), path
        assert (a.dtype, a.shape) == (b.dtype, b.shape), path
        assert np.array_equal(a, b), path
    elif hasattr(a, "__dataclass_fields__"):
        for name in a.__dataclass_fields__:
            assert_same(getattr(a, name), getattr(b, name), f"{path}.{name}")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    else:
        assert a == b, path


@pytest.fixture()
def raw_copy(tiny_data, tiny_raw_dir, tmp_path):
    """The tiny data set's raw folder with its Parquet cache (tiny_data converted it)."""
    out = tmp_path / "raw"
    shutil.copytree(tiny_raw_dir, out, ignore=shutil.ignore_patterns("encoded-*"))
    return out


def _load(raw_dir, out_of_core, **settings):
    from ccp.data.loader import load

    return load("synthetic", raw_dir, synth_profile="tiny", seed=0, progress=False,
                out_of_core=out_of_core, **settings)


@pytest.mark.parametrize("settings", [{}, {"min_count": 1, "keep_purchase_without_click": True}])
def test_streamed_cache_equals_in_memory_encoding(raw_copy, monkeypatch, settings):
    monkeypatch.setattr(stream_encode, "SKELETON_BATCH_ROWS", BATCHES["skeleton_batch_rows"])
    monkeypatch.setattr(stream_encode, "COMMON_BATCH_ROWS", BATCHES["common_batch_rows"])
    batch_rows = []
    read_batches = ParquetSource.batches

    def counted(source, columns=None):
        for table in read_batches(source, columns):
            batch_rows.append(table.num_rows)
            yield table

    monkeypatch.setattr(ParquetSource, "batches", counted)
    in_memory = _load(raw_copy, False, **settings)
    streamed = _load(raw_copy, True, **settings)
    # The streamed encoding really crossed batch edges (the in-memory one reads no Parquet).
    assert len(batch_rows) > 100 and max(batch_rows) <= BATCHES["skeleton_batch_rows"]
    for name in ("train", "valid", "test"):
        assert_same(in_memory.splits[name], streamed.splits[name], name)
    assert streamed.vocab_sizes == in_memory.vocab_sizes
    assert streamed.fingerprint == in_memory.fingerprint
    info = dict(streamed.info)
    assert info.pop("encoded_cache")["memory_mapped"]
    assert_same(in_memory.info, info, "info")
    # Rows were really filtered or kept, so the settings were exercised.
    assert len(streamed.train) > 1000 and streamed.train.p_click is not None


def test_streamed_splits_are_memory_mapped_and_the_cache_is_reused(raw_copy):
    data = _load(raw_copy, True)
    for split in data.splits.values():
        for array in (split.click, split.item_codes, split.dense, split.user_codes,
                      split.item_multi["210"].codes, split.user_multi["109_14"].offsets):
            assert is_memory_mapped(array)
    # Validation and test share one request table, as they do in memory.
    assert data.valid.user_codes is data.test.user_codes
    folder = stream_encode.encoded_dir(raw_copy / "cache", PrepSettings())
    stamp = (folder / stream_encode.MANIFEST).stat().st_mtime_ns
    _load(raw_copy, True)
    assert (folder / stream_encode.MANIFEST).stat().st_mtime_ns == stamp  # not rebuilt
    # A cache of other settings is another folder; a stale manifest forces a rebuild.
    manifest = json.loads((folder / stream_encode.MANIFEST).read_text())
    manifest["fingerprint"] = "stale"
    (folder / stream_encode.MANIFEST).write_text(json.dumps(manifest))
    rebuilt = _load(raw_copy, True)
    assert rebuilt.fingerprint != "stale" and len(rebuilt.train) == len(data.train)


def test_interrupted_encoding_leaves_no_cache_that_looks_complete(raw_copy, monkeypatch):
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    _load(raw_copy, False)  # the Parquet cache exists; only the encoding is interrupted
    monkeypatch.setattr(Encoder, "write_impressions", fail)
    with pytest.raises(KeyboardInterrupt):
        _load(raw_copy, True)
    cache = raw_copy / "cache"
    assert not list(cache.glob("encoded-*")) and not list(cache.glob(".encoding-*"))


def test_missing_request_key_names_file_line_and_field(raw_copy):
    _load(raw_copy, False)
    path = raw_copy / "cache" / "common_train.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)  # drop the first request of the train file
    from ccp.data.loader import load_raw

    with pytest.raises(ValueError, match=r"sample_skeleton_train.csv line \d+, field "
                                         "common_feature_index: request key"):
        # The raw cache's fingerprint covers the raw files, not the Parquet: it is reused.
        load_raw(raw_copy, settings=PrepSettings(), progress=False, out_of_core=True)


def test_counts_merged_over_batches_equal_one_count():
    rng = np.random.default_rng(0)
    ids = rng.zipf(1.5, 50_000).astype(np.int64) - 2  # -1 = absent
    weights = rng.integers(0, 5, len(ids))
    counts = IdCounts()
    for part in np.array_split(np.arange(len(ids)), 37):
        counts.add(ids[part], weights[part])
    expected = Vocabulary.fit(ids, weights, min_count=7)
    assert np.array_equal(counts.vocabulary(7).kept_ids, expected.kept_ids)


def test_npy_appender_grows_a_file_numpy_reads(tmp_path):
    path = tmp_path / "a.npy"
    appender = NpyAppender(path, np.int64, (3,))
    for k in range(5):
        appender.append(np.full((k, 3), k))
    appender.close()
    loaded = np.load(path, mmap_mode="r")
    assert loaded.shape == (10, 3)
    assert loaded[:, 0].tolist() == [1, 2, 2, 3, 3, 3, 4, 4, 4, 4]


def test_slice_rows_keeps_only_the_chunk_requests(tiny_data):
    train = tiny_data.train
    start, stop = 1000, 2500
    chunk = train.slice_rows(start, stop)
    assert len(chunk) == stop - start and chunk.n_requests < train.n_requests
    np.testing.assert_array_equal(chunk.single_codes(), train.single_codes()[start:stop])
    rows = np.arange(start, stop)
    for name in train.user_multi:
        assert_same(chunk.impression_user_multi(name),
                    train.user_multi[name].take(train.request[rows]), name)
    assert_same(chunk.item_multi["210"], train.item_multi["210"].take(rows), "210")
    assert isinstance(chunk.item_multi["210"], Ragged)


def test_chunk_rule():
    assert chunk_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_bounds(10, 0) == [(0, 10)]

    class Small:
        click = np.zeros(5, dtype=np.int8)

        def __len__(self):
            return 5

    assert chunk_rows_for(Small(), 0) == 0  # in memory and short: no chunks
    assert chunk_rows_for(Small(), 2) == 2
    assert chunk_rows_for(Small(), -1) == 0
