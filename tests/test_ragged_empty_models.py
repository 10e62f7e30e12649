"""Empty id lists on the model side: pooling (both of the embedding layer's ways), batches,
row chunks, tree features and every neural serving path, each checked against a plain loop
(or the library forward) with empty lists first, in the middle, last and everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from ccp.data import schema
from ccp.data.dataset import Ragged, Split

N_REQUESTS, PER_REQUEST = 4, 3
VOCAB = 7  # codes 0..6 in every field

# Which rows have a non-empty list: users (of 4 requests) and impressions (of 12).
PATTERNS = {
    "last empty": ([1, 1, 0, 0], [1] * 9 + [0] * 3),
    "first empty": ([0, 0, 1, 1], [0] * 3 + [1] * 9),
    "middle empty": ([1, 0, 0, 1], [1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 1]),
    "all empty": ([0] * 4, [0] * 12),
}


def lists(has: list[int], rng, longest: int = 4) -> Ragged:
    lengths = np.array([rng.integers(1, longest + 1) if h else 0 for h in has], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return Ragged(offsets, rng.integers(0, VOCAB, offsets[-1]),
                  rng.uniform(0.2, 2.0, offsets[-1]).astype(np.float32))


def make_split(pattern: str, seed: int = 0) -> Split:
    users, items = PATTERNS[pattern]
    rng = np.random.default_rng(seed)
    n = N_REQUESTS * PER_REQUEST
    return Split(
        name=pattern, click=(np.arange(n) % 2).astype(np.int8),
        purchase=(np.arange(n) % 4 == 1).astype(np.int8), sample_id=np.arange(n),
        request=np.repeat(np.arange(N_REQUESTS), PER_REQUEST),
        item_codes=rng.integers(0, VOCAB, (n, len(schema.IMPRESSION_SINGLE))),
        item_multi={f: lists(items, rng) for f in schema.ITEM_MULTI},
        dense=rng.uniform(0, 1, (n, len(schema.DENSE_FEATURES))).astype(np.float32),
        request_key=np.array([f"{r:016x}" for r in range(N_REQUESTS)]),
        user_codes=rng.integers(0, VOCAB, (N_REQUESTS, len(schema.USER_SINGLE))),
        user_multi={f: lists(users, rng) for f in schema.USER_MULTI})


def pooled_by_loop(table, offset: int, r: Ragged, pooling: str):
    import torch

    out = torch.zeros(r.n_rows, table.shape[1], dtype=torch.float64)
    for i in range(r.n_rows):
        a, b = int(r.offsets[i]), int(r.offsets[i + 1])
        for code, w in zip(r.codes[a:b], r.weights[a:b]):
            scale = float(w) / (b - a) if pooling == "mean" else float(w)
            out[i] += table[offset + int(code)].double() * scale
    return out


@pytest.mark.parametrize("pooling", ["sum", "mean"])
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_pooled_lists_equal_a_loop_in_both_pooling_ways(pattern, pooling):
    torch = pytest.importorskip("torch")
    from neural.inputs import FeatureEmbedding, FieldLayout, TensorSplit

    split = make_split(pattern)
    layout = FieldLayout.from_vocab_sizes({f: VOCAB for f in schema.ALL_FIELDS})
    torch.manual_seed(0)
    embedding = FeatureEmbedding(layout, 4).eval()
    data = TensorSplit(split, layout, pooling)
    rows = torch.tensor([11, 0, 5, 6, 2, 9, 3])  # out of order, several requests
    batch = data.batch(rows)
    d = embedding.embedding_dim
    with torch.no_grad():
        for way in (batch, batch.compact()):  # embedding_bag; gather and index_add
            weight = embedding.weight_for(way)
            user = embedding.user_block(way.user_single, way.user_bags, weight)
            item = embedding.item_block(way.item_single, way.item_bags, weight)
            used = torch.unique(data.request[rows]).numpy()
            for k, f in enumerate(schema.USER_MULTI):
                want = pooled_by_loop(embedding.table, layout.offsets[f],
                                      split.user_multi[f].take(used), pooling)
                got = user[:, (len(schema.USER_SINGLE) + k) * d:][:, :d]
                assert torch.allclose(got.double(), want, atol=1e-6), (f, way is batch)
            for k, f in enumerate(schema.ITEM_MULTI):
                want = pooled_by_loop(embedding.table, layout.offsets[f],
                                      split.item_multi[f].take(rows.numpy()), pooling)
                got = item[:, (len(schema.IMPRESSION_SINGLE) + k) * d:][:, :d]
                assert torch.allclose(got.double(), want, atol=1e-6), (f, way is batch)


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_row_chunks_and_subsets_keep_every_list(pattern):
    split = make_split(pattern, seed=3)
    for start, stop in ((0, 12), (0, 3), (3, 9), (9, 12), (11, 12), (5, 5)):
        chunk = split.slice_rows(start, stop)
        for f, r in split.item_multi.items():
            assert _rows(chunk.item_multi[f]) == _rows(r)[start:stop]
        requests = np.unique(split.request[start:stop])
        for f, r in split.user_multi.items():
            assert _rows(chunk.user_multi[f]) == [_rows(r)[q] for q in requests]
            assert _rows(chunk.impression_user_multi(f)) == [
                _rows(r)[q] for q in split.request[start:stop]]
    clicked = split.clicked()
    for f, r in split.item_multi.items():
        assert _rows(clicked.item_multi[f]) == [_rows(r)[i] for i in np.flatnonzero(split.click)]


def _rows(r: Ragged):
    return [(r.codes[a:b].tolist(), r.weights[a:b].tolist())
            for a, b in zip(r.offsets[:-1], r.offsets[1:])]


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_tree_features_first_node_and_list_length(pattern):
    pytest.importorskip("sklearn")
    from baselines.tree_features import field_codes

    split = make_split(pattern, seed=5)
    nodes = split.item_multi["210"]
    want = [codes[0] if codes else schema.CODE_MISSING for codes, _ in _rows(nodes)]
    assert field_codes(split, ("210",))["210"].tolist() == want


@pytest.fixture(scope="module")
def fitted_mmoe(tiny_data, tiny_profile):
    pytest.importorskip("torch")
    from bench.harness import fitted
    from bench.registry import get

    return fitted(get("neural/mmoe"), tiny_data, tiny_profile, seed=0, threads=1,
                  extra={"embedding_dim": 8, "mlp_dims": (32, 16), "tower_dims": (8,)})


def _without_lists(request: Split, user: bool, items: np.ndarray) -> Split:
    """The request with its user's behaviour lists emptied and the 210 lists of `items`."""
    import dataclasses

    def emptied(r: Ragged, rows: np.ndarray) -> Ragged:
        gone = np.isin(np.arange(r.n_rows), rows)
        kept = np.repeat(~gone, r.lengths())
        offsets = np.concatenate([[0], np.cumsum(np.where(gone, 0, r.lengths()))])
        return Ragged(offsets, r.codes[kept], r.weights[kept])

    user_multi = {f: emptied(r, np.array([0]) if user else np.array([], int))
                  for f, r in request.user_multi.items()}
    item_multi = {f: emptied(r, items) for f, r in request.item_multi.items()}
    return dataclasses.replace(request, user_multi=user_multi, item_multi=item_multi)


@pytest.mark.parametrize("where", ["user lists", "first items", "last items", "everything"])
def test_every_serving_path_scores_requests_with_empty_lists(fitted_mmoe, tiny_data, where):
    from bench.latency import assemble, max_abs_diff, plan_requests
    from neural.serving_paths import serving_paths

    plan = plan_requests(tiny_data.test, 50, n_requests=1, seed=2)[0]
    request = assemble(tiny_data.test, plan)
    n = len(request)
    items = {"user lists": [], "first items": range(10), "last items": range(n - 10, n),
             "everything": range(n)}[where]
    request = _without_lists(request, where in ("user lists", "everything"),
                             np.array(list(items), dtype=np.int64))
    assert (request.user_multi["109_14"].lengths() == 0).all() == (
        where in ("user lists", "everything"))
    library = fitted_mmoe.predict(request)
    paths = serving_paths(fitted_mmoe)
    for name in ("eager_per_candidate", "eager", "request_shared", "compiled"):
        if name in paths:
            diff = max_abs_diff(paths[name](request), library)
            assert diff <= 1e-5, f"{name} ({where}): max abs diff {diff:.2e}"
