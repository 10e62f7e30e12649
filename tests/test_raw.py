"""The raw Tianchi reader: what is written in the raw files comes back from the Parquet cache."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_bad_input import KEY, SKELETON, convert, strict_error  # one train-split converter

from ccp.data import raw, schema
from ccp.data.fingerprint import fingerprint_files

VALUE_TEXTS = ("1.0", "0.693147", "2.3979", "1e-05", ".5", "3", "0.0", "12.75")


def line_text(columns, triples, feature_num=None) -> str:
    """One raw line; triples are (field, feature id, value text)."""
    feature_list = "\x01".join(f"{f}\x02{i}\x03{v}" for f, i, v in triples)
    n = len(triples) if feature_num is None else feature_num
    return ",".join([*map(str, columns), str(n), feature_list])


def write_split(data_dir, split, skeleton_lines, common_lines):
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / schema.skeleton_name(split)).write_text("".join(x + "\n" for x in skeleton_lines))
    (data_dir / schema.common_name(split)).write_text("".join(x + "\n" for x in common_lines))


def set_lists_in_line_order(row, triples, multi_fields):
    """A multi field's list holds its ids in the order of the line."""
    for f in multi_fields:
        row[f] = [i for field, i, _ in triples if field == f]
        row[f + "_value"] = [float(np.float32(v)) for field, _, v in triples if field == f]


def random_split(rng: random.Random, first_sample_id: int):
    """Raw lines of one split and the rows the cache must hold, computed independently."""
    common_lines, common_rows, skeleton_lines, skeleton_rows = [], [], [], []
    sample_id = first_sample_id
    for _ in range(14):
        key = f"{rng.getrandbits(64):016x}"
        triples, row = [], {"line": len(common_lines) + 1, "request_key": key}
        for f in schema.USER_SINGLE:
            row[f] = None
            if rng.random() < 0.85:
                ids = [rng.randrange(1, 2**31) for _ in range(rng.choice((1, 1, 1, 2)))]
                triples += [(f, i, "1.0") for i in ids]
                row[f] = ids[0]  # a repeated single field keeps its first id
        for f in schema.USER_MULTI:
            n = rng.choice((0, 1, 3, 40))
            ids = [rng.randrange(1, 2**31) for _ in range(n)]
            texts = [rng.choice(VALUE_TEXTS) for _ in range(n)]
            triples += list(zip([f] * n, ids, texts))
            row[f], row[f + "_value"] = ids, [float(np.float32(t)) for t in texts]
        rng.shuffle(triples)  # the order of triples on a line must not matter...
        # ...except between repeats of a single field: the first one is kept.
        triples.sort(key=lambda t: t[0] in schema.USER_SINGLE and row[t[0]] != t[1])
        set_lists_in_line_order(row, triples, schema.USER_MULTI)
        common_lines.append(line_text([key], triples))
        common_rows.append(row)
        for _ in range(rng.choice((0, 1, 5, 30))):
            sample_id += rng.choice((1, 1, 2))
            click = int(rng.random() < 0.3)
            purchase = int(rng.random() < (0.4 if click else 0.05))
            triples = []
            row = {"line": len(skeleton_lines) + 1, "sample_id": sample_id, "click": click,
                   "purchase": purchase, "request_key": key}
            for f in schema.IMPRESSION_SINGLE:
                row[f] = None
                if f in schema.COMBINATION:
                    row[f + "_value"] = None
                if rng.random() < 0.8:
                    ids = [rng.randrange(0, 2**31) for _ in range(rng.choice((1, 1, 1, 1, 2)))]
                    texts = [rng.choice(VALUE_TEXTS) for _ in ids]
                    triples += [(f, i, t) for i, t in zip(ids, texts)]
                    row[f] = ids[0]
                    if f in schema.COMBINATION:
                        row[f + "_value"] = float(np.float32(texts[0]))
            n = rng.choice((0, 1, 2, 5))
            ids = [rng.randrange(1, 2**31) for _ in range(n)]
            texts = [rng.choice(VALUE_TEXTS) for _ in range(n)]
            triples += list(zip(["210"] * n, ids, texts))
            row["210"], row["210_value"] = ids, [float(np.float32(t)) for t in texts]
            firsts = {f: row[f] for f in schema.IMPRESSION_SINGLE}
            rng.shuffle(triples)
            # Put each single field's kept triple before its repeats (stable among the rest).
            triples.sort(key=lambda t: t[0] in firsts and firsts[t[0]] != t[1])
            set_lists_in_line_order(row, triples, schema.ITEM_MULTI)
            skeleton_lines.append(line_text([sample_id, click, purchase, key], triples))
            skeleton_rows.append(row)
    return skeleton_lines, skeleton_rows, common_lines, common_rows


@pytest.fixture(scope="module")
def random_raw(tmp_path_factory):
    rng = random.Random(7)
    data_dir = tmp_path_factory.mktemp("random_raw")
    expected = {}
    for split, first_id in (("train", 1), ("test", 10_000)):
        skeleton_lines, skeleton_rows, common_lines, common_rows = random_split(rng, first_id)
        write_split(data_dir, split, skeleton_lines, common_lines)
        expected[split] = (skeleton_rows, common_rows)
    return data_dir, expected


def read_rows(path):
    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize("block_bytes", [4096, raw.BLOCK_BYTES])
def test_round_trip_exact(random_raw, tmp_path, block_bytes):
    data_dir, expected = random_raw
    raw.convert_raw(data_dir, tmp_path, block_bytes=block_bytes, workers=2, progress=False)
    for split, (skeleton_rows, common_rows) in expected.items():
        assert read_rows(tmp_path / f"skeleton_{split}.parquet") == skeleton_rows
        assert read_rows(tmp_path / f"common_{split}.parquet") == common_rows


def test_cache_schema_matches_schema_py(random_raw, tmp_path):
    data_dir, _ = random_raw
    raw.convert_raw(data_dir, tmp_path, progress=False)
    skeleton = pq.read_schema(tmp_path / "skeleton_train.parquet")
    common = pq.read_schema(tmp_path / "common_train.parquet")
    assert skeleton.names == (list(schema.SKELETON_BASE_COLUMNS) + list(schema.IMPRESSION_SINGLE)
                              + [f"{f}_value" for f in schema.COMBINATION]
                              + [n for f in schema.ITEM_MULTI for n in (f, f"{f}_value")])
    assert common.names == (list(schema.COMMON_BASE_COLUMNS) + list(schema.USER_SINGLE)
                            + [n for f in schema.USER_MULTI for n in (f, f"{f}_value")])
    assert str(skeleton.field("click").type) == "int8"
    assert str(skeleton.field("205").type) == "int64"
    assert str(skeleton.field("508_value").type) == "float"
    assert str(skeleton.field("210").type.value_type) == "int64"
    assert str(common.field("109_14_value").type.value_type) == "float"
    assert str(common.field("request_key").type) == "string"


def test_manifest_counts(random_raw, tmp_path):
    data_dir, expected = random_raw
    report = raw.convert_raw(data_dir, tmp_path, progress=False)
    assert json.loads((tmp_path / "manifest.json").read_text()) == report
    for split, (skeleton_rows, common_rows) in expected.items():
        got = report["splits"][split]
        clicks = [r["click"] for r in skeleton_rows]
        purchases = [r["purchase"] for r in skeleton_rows]
        assert got["impressions"] == len(skeleton_rows)
        assert got["requests"] == len(common_rows)
        assert got["requests_with_impressions"] == len({r["request_key"] for r in skeleton_rows})
        assert got["clicks"] == sum(clicks)
        assert got["purchases"] == sum(purchases)
        assert got["purchase_without_click"] == sum(p and not c for c, p in
                                                    zip(clicks, purchases))
        assert report["files"][schema.skeleton_name(split)]["lines"] == len(skeleton_rows)
        assert report["files"][schema.common_name(split)]["lines"] == len(common_rows)
    assert report["skipped_lines"] == 0
    assert report["fingerprint"] == fingerprint_files(
        raw.raw_paths(data_dir, ("train", "test")), raw.raw_settings())
    assert report["mb_per_s"] > 0 and report["seconds"] > 0


def test_repeated_single_fields_are_repaired_and_counted(tmp_path):
    data_dir = tmp_path / "raw"
    key = "00000000000000ab"
    common = [line_text([key], [("101", 5, "1.0"), ("101", 6, "1.0"), ("121", 7, "1.0")])]
    skeleton = [line_text([1, 0, 0, key], [("205", 1, "1.0"), ("206", 2, "1.0")]),
                line_text([2, 1, 0, key], [("205", 3, "1.0"), ("205", 4, "1.0"),
                                           ("508", 8, "0.25"), ("508", 9, "0.5")])]
    write_split(data_dir, "train", skeleton, common)
    report = raw.convert_raw(data_dir, tmp_path / "cache", splits=("train",), progress=False)
    assert report["repaired_lines"] == 2  # one common line, one skeleton line
    assert report["repaired_triples"] == 3
    files = report["files"]
    assert files["sample_skeleton_train.csv"]["repaired_lines"] == 1
    assert files["sample_skeleton_train.csv"]["repaired_triples"] == 2
    lines = {(f, line) for f, line, _ in report["repair_examples"]}
    assert lines == {("common_features_train.csv", 1), ("sample_skeleton_train.csv", 2)}
    row = read_rows(tmp_path / "cache" / "skeleton_train.parquet")[1]
    assert (row["205"], row["508"], row["508_value"]) == (3, 8, 0.25)
    assert read_rows(tmp_path / "cache" / "common_train.parquet")[0]["101"] == 5


def test_cache_is_current_follows_inputs_and_settings(random_raw, tmp_path):
    data_dir, _ = random_raw
    copy = tmp_path / "raw"
    copy.mkdir()
    for path in data_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    cache = tmp_path / "cache"
    assert not raw.cache_is_current(copy, cache, {"lenient": False})
    raw.convert_raw(copy, cache, progress=False)
    assert raw.cache_is_current(copy, cache, {"lenient": False})
    assert raw.cache_is_current(copy, cache)
    assert not raw.cache_is_current(copy, cache, {"lenient": True})
    assert not raw.cache_is_current(copy, cache, {"splits": ["train"]})
    target = copy / "common_features_test.csv"
    text = target.read_bytes()
    target.write_bytes(text.replace(b"\x031.0", b"\x031.5", 1))  # same size, other content
    assert not raw.cache_is_current(copy, cache)
    target.write_bytes(text)
    assert raw.cache_is_current(copy, cache)
    (cache / "skeleton_test.parquet").unlink()
    assert not raw.cache_is_current(copy, cache)


def test_failed_conversion_leaves_no_complete_cache(random_raw, tmp_path):
    data_dir, _ = random_raw
    copy = tmp_path / "raw"
    copy.mkdir()
    for path in data_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    cache = tmp_path / "cache"
    raw.convert_raw(copy, cache, progress=False)
    with open(copy / "sample_skeleton_test.csv", "a") as fh:
        fh.write("1,0,0,zzzz,0,\n")
    with pytest.raises(raw.RawFormatError):
        raw.convert_raw(copy, cache, progress=False)
    assert not (cache / "manifest.json").exists()
    assert not raw.cache_is_current(copy, cache)
    # No work folder left; the lock file stays (removing it would let two processes lock
    # two different files of one name).
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == [".lock"]


def test_single_split(random_raw, tmp_path):
    data_dir, expected = random_raw
    report = raw.convert_raw(data_dir, tmp_path, splits=("test",), progress=False)
    assert list(report["splits"]) == ["test"]
    assert sorted(p.name for p in tmp_path.glob("*.parquet")) == ["common_test.parquet",
                                                                 "skeleton_test.parquet"]
    assert read_rows(tmp_path / "skeleton_test.parquet") == expected["test"][0]


def reference_parse(path, layout):
    """A plain-Python reading of a raw file into the cache's rows (for the generator's data)."""
    rows = []
    with open(path, "rb") as fh:
        for number, text in enumerate(fh, start=1):
            cells = text.rstrip(b"\n").split(b",")
            row = {"line": number}
            if layout is raw.SKELETON:
                row.update(sample_id=int(cells[0]), click=int(cells[1]), purchase=int(cells[2]))
            row["request_key"] = cells[-3].decode()
            for f in layout.single:
                row[f] = None
            for f in layout.valued:
                row[f + "_value"] = None
            for f in layout.multi:
                row[f], row[f + "_value"] = [], []
            triples = cells[-1].split(b"\x01")
            assert int(cells[-2]) == len(triples)
            for triple in triples:
                field, rest = triple.split(b"\x02")
                fid, value = rest.split(b"\x03")
                field = field.decode()
                if field in layout.multi:
                    row[field].append(int(fid))
                    row[field + "_value"].append(float(np.float32(value.decode())))
                elif row[field] is None:
                    row[field] = int(fid)
                    if field in layout.valued:
                        row[field + "_value"] = float(np.float32(value.decode()))
            rows.append(row)
    return rows


def test_synthetic_tiny_round_trip(tiny_raw_dir, tmp_path):
    report = raw.convert_raw(tiny_raw_dir, tmp_path, progress=False)
    info = json.loads((tiny_raw_dir / "synth_info.json").read_text())
    for split in ("train", "test"):
        skeleton = read_rows(tmp_path / f"skeleton_{split}.parquet")
        assert skeleton == reference_parse(tiny_raw_dir / schema.skeleton_name(split),
                                           raw.SKELETON)
        common = read_rows(tmp_path / f"common_{split}.parquet")
        assert common == reference_parse(tiny_raw_dir / schema.common_name(split), raw.COMMON)
        got, truth = report["splits"][split], info["counts"][split]
        assert got["impressions"] == truth["impressions"] == len(skeleton)
        assert got["requests"] == truth["requests"] == len(common)
        for name in ("clicks", "purchases", "click_and_purchase", "purchase_without_click"):
            assert got[name] == truth[name]


def test_fingerprint_changes_with_content_size_and_settings(tmp_path, monkeypatch):
    from ccp.data import fingerprint

    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_bytes(b"0123456789" * 1000)
    b.write_bytes(b"x" * 500)
    base = fingerprint.fingerprint_files([a, b], {"lenient": False})
    assert len(base) == 16 and int(base, 16) >= 0
    assert fingerprint.fingerprint_files([a, b], {"lenient": False}) == base
    assert fingerprint.fingerprint_files([a, b], {"lenient": True}) != base
    assert fingerprint.fingerprint_files([b, a], {"lenient": False}) != base
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    (copy / "a.csv").write_bytes(a.read_bytes())
    (copy / "b.csv").write_bytes(b.read_bytes())
    assert fingerprint.fingerprint_files([copy / "a.csv", copy / "b.csv"],
                                         {"lenient": False}) == base  # location is not content
    a.write_bytes(b"0123456789" * 999 + b"0123456780")  # same size, one byte differs
    assert fingerprint.fingerprint_files([a, b], {"lenient": False}) != base
    # Large files are hashed on sampled blocks: the first and last blocks are always read.
    monkeypatch.setattr(fingerprint, "FULL_HASH_LIMIT", 1000)
    monkeypatch.setattr(fingerprint, "SAMPLE_BLOCK_BYTES", 100)
    a.write_bytes(b"0123456789" * 1000)
    sampled = fingerprint.fingerprint_files([a], {})
    assert fingerprint.describe_file(a)["hash_mode"].startswith("sampled")
    for edit in (b"X" + a.read_bytes()[1:], a.read_bytes()[:-1] + b"X", a.read_bytes() + b"1"):
        a.write_bytes(edit)
        assert fingerprint.fingerprint_files([a], {}) != sampled
    a.write_bytes(b"0123456789" * 1000)
    assert fingerprint.fingerprint_files([a], {}) == sampled


def test_prepare_bench_measures_two_sizes(tmp_path):
    from bench.prepare_bench import run_prepare_bench

    result = run_prepare_bench(sizes=(1.0, 0.5), work_dir=tmp_path, profile="tiny",
                               progress=False)
    small, large = result["runs"]
    assert (small["scale"], large["scale"]) == (0.5, 1.0)
    assert 1.5 < large["raw_mb"] / small["raw_mb"] < 2.5
    assert large["impressions"] > small["impressions"] > 0
    for run in result["runs"]:
        assert run["seconds"] > 0 and run["cpu_seconds"] > 0 and run["peak_rss_mib"] > 50
        assert run["mb_per_s"] == pytest.approx(run["raw_mb"] / run["seconds"], rel=0.01)
    assert result["size_ratio"] == pytest.approx(large["raw_mb"] / small["raw_mb"], rel=0.01)
    assert isinstance(result["memory_flat"], bool) and isinstance(result["time_linear"], bool)
    assert len(large["rss_mib_by_quarter"]) == 4
    assert not list(tmp_path.glob("*-cache"))  # caches are removed unless kept


# ---- bytes the CSV parser would misread: non-UTF-8 text, a lone carriage return, archives



def skeleton_line(sample_id: int) -> bytes:
    return line_text([sample_id, sample_id % 2, 0, KEY],
                     [("205", sample_id, "1.0"), ("206", 3, "1.0"), ("508", 4, "0.5")]).encode()


def write_raw_bytes(data_dir, skeleton_lines: dict, n: int = 40, end: bytes = b"\n"):
    """A train split of n good skeleton lines, with lines replaced by skeleton_lines
    {line number: raw bytes}; every line is followed by `end`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lines = [skeleton_lines.get(i, skeleton_line(i)) for i in range(1, n + 1)]
    (data_dir / SKELETON).write_bytes(b"".join(x + end for x in lines))
    common = line_text([KEY], [("101", 1, "1.0"), ("109_14", 5, "0.693147")])
    (data_dir / "common_features_train.csv").write_bytes(common.encode() + end)


def check_lenient(data_dir, bad_lines: dict, n: int = 40, **kwargs):
    """Lenient: each bad line is one counted skip, listed in line order, and every other
    line is written under its own physical line number."""
    report = convert(data_dir, lenient=True, **kwargs)
    counts = report["files"][SKELETON]
    assert counts["lines"] == n
    assert counts["skipped_lines"] == len(bad_lines)
    assert counts["rows_written"] == n - len(bad_lines)
    assert [line for _, line, _ in report["skipped_examples"]] == sorted(
        bad_lines)[:raw.EXAMPLES_KEPT]
    table = pq.read_table(data_dir / "cache" / "skeleton_train.parquet")
    kept = [i for i in range(1, n + 1) if i not in bad_lines]
    assert table.column("line").to_pylist() == kept
    assert table.column("sample_id").to_pylist() == kept
    return report


BLOCKS = [200, 1024, raw.BLOCK_BYTES]  # small blocks put block ends around the bad lines


@pytest.mark.parametrize("block_bytes", BLOCKS)
def test_non_utf8_line_with_a_wrong_column_count(tmp_path, capfd, block_bytes):
    bad = {5: b"5,0,0,\xe9t\xe9", 17: b"17,0,0,\xff"}
    write_raw_bytes(tmp_path, bad)
    error = strict_error(tmp_path, block_bytes=block_bytes)
    assert str(error) == (f'{SKELETON} line 5, field feature_num: line has 4 of 6 columns '
                          f'(missing feature_num, feature_list): "5,0,0,\\xe9t\\xe9"')
    assert (error.path, error.line, error.field) == (str(tmp_path / SKELETON), 5,
                                                     "feature_num")
    report = check_lenient(tmp_path, bad, block_bytes=block_bytes)
    assert report["skipped_examples"][1] == [
        SKELETON, 17, 'field feature_num: line has 4 of 6 columns (missing feature_num, '
        'feature_list): "17,0,0,\\xff"']
    assert "UnicodeDecodeError" not in capfd.readouterr().err  # no "Exception ignored"


def test_non_utf8_bytes_in_a_well_formed_line_name_the_triple(tmp_path):
    bad_line = skeleton_line(9).replace(b"206\x023", b"206\x02\xe93")
    write_raw_bytes(tmp_path, {9: bad_line})
    assert str(strict_error(tmp_path)) == (f'{SKELETON} line 9, field feature_list: '
                                           f'triple 2 "206\\x02\\xe93\\x031.0" has a '
                                           f'non-integer feature id')
    check_lenient(tmp_path, {9: bad_line})


def test_a_wholly_non_utf8_file_is_counted_line_by_line(tmp_path):
    bad = {i: skeleton_line(i).replace(b"205", b"\xe905") for i in range(1, 61)}
    write_raw_bytes(tmp_path, bad, n=60)
    report = check_lenient(tmp_path, bad, n=60, block_bytes=512)
    assert len(report["skipped_examples"]) == raw.EXAMPLES_KEPT
    assert "unknown field id" in report["skipped_examples"][-1][2]


@pytest.mark.parametrize("block_bytes", BLOCKS)
@pytest.mark.parametrize("end", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_lone_carriage_return_is_a_bad_character_of_its_line(tmp_path, block_bytes, end):
    in_features = skeleton_line(5).replace(b"206", b"2\r06")
    bad_value = line_text([17, 0, 0, KEY], [("205", 1, "x")]).encode()
    write_raw_bytes(tmp_path, {5: in_features, 17: bad_value}, end=end)
    error = strict_error(tmp_path, block_bytes=block_bytes)
    assert (error.line, error.field) == (5, "feature_list")
    assert str(error).startswith(f"{SKELETON} line 5, field feature_list: carriage "
                                 f"return (\\r) at byte 37 of the line, not part of a \\r\\n "
                                 f'line end: "5,1,0,{KEY},3,205\\x025\\x031.0\\x012\\x0d06')
    check_lenient(tmp_path, {5: in_features, 17: bad_value}, block_bytes=block_bytes)
    # In another column, the error names that column; two lone CRs are still one line.
    in_key = skeleton_line(8).replace(KEY.encode(), b"0123\r4567\r89abcdef")
    write_raw_bytes(tmp_path, {8: in_key}, end=end)
    error = strict_error(tmp_path, block_bytes=block_bytes)
    assert (error.line, error.field) == (8, "common_feature_index")
    check_lenient(tmp_path, {8: in_key}, block_bytes=block_bytes)


@pytest.mark.parametrize("block_bytes", BLOCKS)
def test_crlf_and_lf_files_give_the_same_cache(tmp_path, block_bytes):
    tables = {}
    for name, end in (("lf", b"\n"), ("crlf", b"\r\n")):
        write_raw_bytes(tmp_path / name, {}, end=end)
        report = convert(tmp_path / name, block_bytes=block_bytes)
        assert report["files"][SKELETON]["lines"] == 40
        tables[name] = read_rows(tmp_path / name / "cache" / "skeleton_train.parquet")
    assert len(tables["lf"]) == 40 and tables["crlf"] == tables["lf"]


def test_byte_order_mark_at_the_start_is_not_a_bad_byte(tmp_path):
    tables = {}
    for name, mark in (("plain", b""), ("bom", b"\xef\xbb\xbf")):
        write_raw_bytes(tmp_path / name, {1: mark + skeleton_line(1)})
        convert(tmp_path / name)
        tables[name] = read_rows(tmp_path / name / "cache" / "skeleton_train.parquet")
    assert len(tables["plain"]) == 40 and tables["bom"] == tables["plain"]
    # A bad byte on the first line: the error shows the line without the mark.
    write_raw_bytes(tmp_path / "bad", {1: b"\xef\xbb\xbf1,0,0,\xe9"})
    assert str(strict_error(tmp_path / "bad")).endswith('(missing feature_num, feature_list): '
                                                       '"1,0,0,\\xe9"')


def test_last_line_may_end_with_a_lone_carriage_return(tmp_path):
    write_raw_bytes(tmp_path, {})
    path = tmp_path / SKELETON
    path.write_bytes(path.read_bytes()[:-1] + b"\r")  # the final \n replaced by \r
    report = convert(tmp_path)
    assert report["files"][SKELETON]["lines"] == 40
    assert report["files"][SKELETON]["rows_written"] == 40


def test_skipped_examples_are_in_line_order_across_kinds(tmp_path):
    # A column-count error (6) between two bad values (5, 18) of the same block.
    bad = {5: line_text([5, 0, 0, KEY], [("205", 1, "x")]).encode(), 6: b"6,0,0",
           18: line_text([18, 0, 0, KEY], [("205", 1, "y")]).encode()}
    write_raw_bytes(tmp_path, bad)
    check_lenient(tmp_path, bad)


def test_repeated_request_keys_are_listed_in_line_order(tmp_path):
    common = [line_text([f"{i:016x}"], [("101", i, "1.0")]) for i in range(1, 9)]
    common[4] = common[0]  # line 5 repeats line 1's key
    common[6] = "7"  # a column-count error after it
    data_dir = tmp_path / "raw"
    write_split(data_dir, "train", [line_text([1, 0, 0, f"{1:016x}"], [])], common)
    report = raw.convert_raw(data_dir, tmp_path / "cache", splits=("train",), lenient=True,
                             progress=False)
    assert [line for _, line, _ in report["skipped_examples"]] == [5, 7]
    assert report["files"]["common_features_train.csv"]["skipped_by_kind"] == {
        "duplicate_key": 1, "format": 1}


@pytest.mark.parametrize("what, head", [
    ("gzip-compressed", None), ("a zip archive", b"PK\x03\x04" + b"\0" * 60),
    ("a tar archive", b"sample_skeleton_train.csv".ljust(257, b"\0") + b"ustar\x0000")],
    ids=["gzip", "zip", "tar"])
def test_archive_saved_under_the_csv_name(tmp_path, what, head):
    import gzip

    write_raw_bytes(tmp_path, {})
    path = tmp_path / SKELETON
    path.write_bytes(gzip.compress(path.read_bytes()) if head is None else head.ljust(1024, b"\0"))
    for lenient in (False, True):  # not a line to skip
        with pytest.raises(raw.RawFormatError) as caught:
            convert(tmp_path, lenient=lenient)
        assert (caught.value.path, caught.value.line) == (str(path), None)
        assert str(caught.value).startswith(f"{SKELETON}: file is {what} (its bytes at "
                                            f"offset ")
        assert "decompress it first" in str(caught.value)


def test_file_with_carriage_return_line_ends(tmp_path):
    # Not the format (lines end with \n): one physical line, which is an error whatever its size.
    write_raw_bytes(tmp_path, {}, end=b"\r")
    error = strict_error(tmp_path)
    assert (error.line, error.field) == (1, "feature_list")
    assert "carriage return (\\r)" in str(error)
    error = strict_error(tmp_path, block_bytes=512)  # the line is longer than the block
    assert error.line == 1 and "longer than the read block of 512 bytes" in str(error)
