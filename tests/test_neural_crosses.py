"""The user x item cross ids the neural models see (neural/crosses.py): codes, rare pairs, and
`cross_ids=false` giving the inputs without them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_neural import TINY, VOCAB, fit, random_split  # noqa: E402

from ccp.data import schema  # noqa: E402
from ccp.data.dataset import Dataset  # noqa: E402
from neural.config import NeuralConfig  # noqa: E402
from neural.crosses import CROSS_FIELDS, CROSSES, CrossIds, buckets_for  # noqa: E402
from neural.inputs import FieldLayout, TensorSplit  # noqa: E402
from neural.trainer import layout_for  # noqa: E402

MIN_COUNT = 3


@pytest.fixture(scope="module")
def splits():
    # Few users and codes 0..11 (0 missing, 1 rare): pairs repeat, some under MIN_COUNT.
    rng = np.random.default_rng(11)
    return random_split("train", 400, 6, rng), random_split("valid", 200, 4, rng)


def _pairs(split, item_field):
    user = split.user_codes[split.request, schema.USER_SINGLE.index("101")]
    item = split.item_codes[:, schema.IMPRESSION_SINGLE.index(item_field)]
    return [(int(u), int(i)) for u, i in zip(user, item)]


def _expected_code(pair, train_counts, buckets):
    """The documented rule, row by row in Python integers."""
    from pandas.util import hash_array

    user, item = pair
    if schema.CODE_MISSING in pair:
        return schema.CODE_MISSING
    if min(pair) < schema.FIRST_CODE or train_counts[pair] < MIN_COUNT:
        return schema.CODE_RARE
    key = np.array([(user << 32) | item], dtype=np.uint64)
    return schema.FIRST_CODE + int(hash_array(key, categorize=False)[0]) % buckets


def test_each_rows_cross_code_is_the_hash_of_its_user_and_item_codes(splits):
    train, valid = splits
    crosses = CrossIds.fit(train, MIN_COUNT)
    for split in (train, valid):
        codes = crosses.codes(split)
        assert codes.shape == (len(split), 3)
        for k, (name, (_, item_field)) in enumerate(zip(CROSS_FIELDS, CROSSES)):
            train_counts = Counter(_pairs(train, item_field))
            expected = [_expected_code(p, train_counts, crosses.buckets[name])
                        for p in _pairs(split, item_field)]
            assert codes[:, k].tolist() == expected, name
    # The check covers every case: missing, rare and hashed codes all occur in train.
    assert {0, 1} < set(crosses.codes(train).ravel().tolist())


def test_a_pair_unseen_or_rare_in_train_gets_the_rare_code(splits):
    train, valid = splits
    crosses = CrossIds.fit(train, MIN_COUNT)
    train_counts = Counter(_pairs(train, "206"))
    codes = crosses.codes(valid)[:, 0]
    rare = [k for k, p in enumerate(_pairs(valid, "206"))
            if schema.CODE_MISSING not in p and train_counts[p] < MIN_COUNT]
    assert rare and all(codes[k] == schema.CODE_RARE for k in rare)
    # A min_count no pair reaches leaves only the reserved codes.
    assert set(CrossIds.fit(train, 10**6).codes(train).ravel().tolist()) <= {0, 1}


def test_bucket_count_grows_with_the_frequent_pairs_within_its_bounds():
    assert buckets_for(0) == buckets_for(1) == 1024
    assert buckets_for(5055) == 32768  # 4 x 5,055 frequent pairs, next power of two
    assert buckets_for(10**9) == 1 << 20


def test_cross_ids_off_gives_the_old_inputs(splits):
    train, valid = splits
    data = Dataset(name="r", fingerprint="r", train=train, valid=valid, test=valid,
                   vocab_sizes=dict(VOCAB), info={"settings": {"min_count": MIN_COUNT}})
    off = layout_for(data, NeuralConfig.with_overrides({"cross_ids": "false"}))
    assert off == FieldLayout.from_vocab_sizes(VOCAB) and off.crosses is None
    assert off.item_single == schema.IMPRESSION_SINGLE
    assert off.input_dim(4) == 23 * 4 + len(schema.DENSE_FEATURES)
    tensors = TensorSplit(valid, off, "mean")
    shift = np.array([off.offsets[f] for f in schema.IMPRESSION_SINGLE])
    assert np.array_equal(tensors.item_single.numpy(), valid.item_codes + shift)

    on = layout_for(data, NeuralConfig.with_overrides({"cross_ids": "true"}))
    assert on.crosses.min_count == MIN_COUNT
    assert on.item_single == schema.IMPRESSION_SINGLE + CROSS_FIELDS
    assert on.input_dim(4) == 26 * 4 + len(schema.DENSE_FEATURES)
    # The data's own single fields keep their rows; the cross ids' come after them.
    assert all(on.offsets[f] == off.offsets[f] for f in schema.SINGLE_FIELDS + schema.USER_MULTI)
    with_crosses = TensorSplit(valid, on, "mean").item_single.numpy()
    assert np.array_equal(with_crosses[:, :9], tensors.item_single.numpy())
    cross_shift = np.array([on.offsets[f] for f in CROSS_FIELDS])
    assert np.array_equal(with_crosses[:, 9:] - cross_shift, on.crosses.codes(valid))


def test_fitted_models_record_whether_they_saw_the_cross_ids(splits):
    from neural.registry import SPECS

    train, valid = splits
    data = Dataset(name="r", fingerprint="r", train=train, valid=valid, test=valid,
                   vocab_sizes=dict(VOCAB))
    spec = next(s for s in SPECS if s.name == "mmoe")
    on, off = fit(spec, data, cross_ids=True), fit(spec, data, cross_ids=False)
    assert on.info["cross_ids"] and not off.info["cross_ids"]
    assert on.network.in_dim - off.network.in_dim == 3 * TINY["embedding_dim"]
    assert "cross ids, hashed and embedded" in on.INPUTS["match"]
    assert "no explicit user x category/shop/brand cross ids" in off.INPUTS["match"]
