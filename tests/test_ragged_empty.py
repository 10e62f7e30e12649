"""Empty id lists anywhere (first, middle, last or every row) and fields that never occur in a
split: every ragged-list operation stays correct, from the raw files to the model inputs.

Issue 16: valid raw files whose last common-features line had no behaviour list crashed
`bench data info` in Ragged.row_mean_weight (np.add.reduceat past the end)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ccp.data import schema
from ccp.data.dataset import Ragged, segment_sums

KEYS = [f"{k:016x}" for k in (0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6)]


def common_line(key: str, behaviour: dict[str, list[tuple[int, str]]]) -> str:
    triples = [("101", int(key, 16), "1.0"), ("121", 3, "1.0")]
    triples += [(f, i, v) for f, items in behaviour.items() for i, v in items]
    body = "\x01".join(f"{f}\x02{i}\x03{v}" for f, i, v in triples)
    return f"{key},{len(triples)},{body}"


def skeleton_line(sample_id: int, key: str, click: int, nodes: list[int]) -> str:
    triples = [("205", 100 + sample_id % 3, "1.0"), ("508", 7, "0.25")]
    triples += [("210", n, "1.0") for n in nodes]
    body = "\x01".join(f"{f}\x02{i}\x03{v}" for f, i, v in triples)
    return f"{sample_id},{click},0,{key},{len(triples)},{body}"


def write_raw(data_dir, with_lists: set[int], nodes_on: set[int]):
    """Train and test files of 6 requests x 2 impressions; request r has behaviour lists only
    if r is in with_lists, impression i has 210 ids only if i is in nodes_on."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for split in schema.RAW_SPLITS:
        common, skeleton = [], []
        for r, key in enumerate(KEYS):
            lists = {f: [(10 + r, "0.693147"), (20 + r, "1.5")] for f in schema.USER_MULTI} \
                if r in with_lists else {}
            common.append(common_line(key, lists))
            for j in range(2):
                i = 2 * r + j
                skeleton.append(skeleton_line(i + 1, key, click=j, nodes=[5, 6][: 2 * (
                    i in nodes_on)]))
        (data_dir / schema.common_name(split)).write_text("\n".join(common) + "\n")
        (data_dir / schema.skeleton_name(split)).write_text("\n".join(skeleton) + "\n")
    return data_dir


# Which requests (of 6) have behaviour lists and which impressions (of 12) have 210 ids.
LAYOUTS = {
    "last rows empty (the issue's files)": ({0, 1, 2}, set(range(8))),
    "first rows empty": ({3, 4, 5}, set(range(4, 12))),
    "middle rows empty": ({0, 5}, {0, 1, 10, 11}),
    "every row empty (field never occurs)": (set(), set()),
    "no row empty": (set(range(6)), set(range(12))),
}


@pytest.mark.parametrize("out_of_core", [False, True], ids=["in-memory", "out-of-core"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_raw_files_with_empty_lists_load(tmp_path, layout, out_of_core):
    from ccp.data.loader import load

    with_lists, nodes_on = LAYOUTS[layout]
    data_dir = write_raw(tmp_path / "raw", with_lists, nodes_on)
    data = load("aliccp", data_dir, min_count=1, progress=False, allow_empty=True,
                out_of_core=out_of_core)
    train = data.train
    assert len(train) == 12
    mean_col = schema.DENSE_FEATURES.index("109_14_mean_weight")
    len_col = schema.DENSE_FEATURES.index("109_14_log_len")
    has_lists = np.isin(train.request, sorted(with_lists))
    # Requests with lists have mean weight (0.693147 + 1.5) / 2; scaled to 1 when some lack
    # them (they are 0), and to 0 (span 0 -> 1) when every or no request has them.
    both = has_lists.any() and not has_lists.all()
    assert np.array_equal(train.dense[:, mean_col] > 0, has_lists & both)
    assert np.array_equal(train.dense[:, len_col] > 0, has_lists & both)
    for f in schema.USER_MULTI:
        lists = train.user_multi[f]
        assert lists.lengths().tolist() == [2 * (r in with_lists) for r in range(6)]
    nodes = train.item_multi["210"]
    assert nodes.lengths().tolist() == [2 * (i in nodes_on) for i in range(12)]
    # Row chunks (how trainers read a memory-mapped split) hold the same lists.
    from ccp.data.chunks import chunk_bounds

    for start, stop in chunk_bounds(len(train), 5):
        chunk = train.slice_rows(start, stop)
        assert chunk.item_multi["210"].lengths().tolist() == \
            nodes.lengths()[start:stop].tolist()
        user = chunk.impression_user_multi("109_14").lengths().tolist()
        assert user == train.user_multi["109_14"].lengths()[train.request[start:stop]].tolist()


def test_data_info_command_on_the_issue_files(tmp_path):
    """The command of the issue, as a user runs it."""
    data_dir = write_raw(tmp_path / "raw", {0, 1, 2}, set(range(8)))
    done = subprocess.run([sys.executable, "-m", "bench", "data", "info", "--dataset", "aliccp",
                           "--data-dir", str(data_dir), "--min-count", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


# ---- the one helper every per-row reduction goes through ----

def lists_of(lengths: list[int], seed: int = 0) -> Ragged:
    rng = np.random.default_rng(seed)
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Ragged(offsets, rng.integers(2, 50, offsets[-1]),
                  rng.uniform(0.1, 3.0, offsets[-1]).astype(np.float32))


def plain_rows(r: Ragged) -> list[tuple[list[int], list[float]]]:
    return [(r.codes[a:b].tolist(), r.weights[a:b].tolist())
            for a, b in zip(r.offsets[:-1], r.offsets[1:])]


LENGTHS = [[], [0], [0, 0, 0], [3], [0, 2], [2, 0], [2, 0, 0], [0, 0, 2], [1, 0, 3, 0, 0],
           [0, 4, 0, 1, 0]]


@pytest.mark.parametrize("lengths", LENGTHS, ids=str)
def test_segment_sums_and_mean_weight_match_a_loop(lengths):
    r = lists_of(lengths)
    rows = plain_rows(r)
    sums = [float(np.sum(np.float64(w))) for _, w in rows]
    assert np.allclose(segment_sums(r.weights, r.offsets), sums, rtol=1e-6)
    means = [s / len(w) if w else 0.0 for s, (_, w) in zip(sums, rows)]
    got = r.row_mean_weight()
    assert got.dtype == np.float32 and got.shape == (len(lengths),)
    assert np.allclose(got, means, rtol=1e-6)


@pytest.mark.parametrize("lengths", LENGTHS, ids=str)
def test_take_and_slice_match_a_loop(lengths):
    r = lists_of(lengths, seed=1)
    rows = plain_rows(r)
    n = len(lengths)
    for pick in ([], list(range(n))[::-1], [i for i in range(n) for _ in range(2)]):
        got = r.take(np.array(pick, dtype=np.int64))
        assert plain_rows(got) == [rows[i] for i in pick]
        assert got.offsets[0] == 0 and got.offsets[-1] == len(got.codes) == len(got.weights)
    for start in range(n + 1):
        for stop in range(start, n + 1):
            got = r.slice(start, stop)
            assert plain_rows(got) == rows[start:stop]
            assert got.offsets[-1] == len(got.codes)
