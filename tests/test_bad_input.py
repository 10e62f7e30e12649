"""Bad raw input: an exact error naming file, line and field (strict), or a counted skip
(lenient). Nothing is dropped silently."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ccp.data import raw, schema
from ccp.data.raw import blocks, line_rules

KEY = "0123456789abcdef"
OTHER_KEY = "fedcba9876543210"
SKELETON = "sample_skeleton_train.csv"
COMMON = "common_features_train.csv"


def line_text(columns, triples, feature_num=None) -> str:
    feature_list = "\x01".join(f"{f}\x02{i}\x03{v}" for f, i, v in triples)
    n = len(triples) if feature_num is None else feature_num
    return ",".join([*map(str, columns), str(n), feature_list])


def good_skeleton(sample_id: int, key: str = KEY) -> str:
    return line_text([sample_id, sample_id % 2, 0, key],
                     [("205", sample_id, "1.0"), ("206", 3, "1.0"), ("508", 4, "0.5")])


def good_common(key: str) -> str:
    return line_text([key], [("101", 1, "1.0"), ("109_14", 5, "0.693147"),
                             ("109_14", 6, "1.09861")])


def write_files(data_dir, skeleton_lines, common_lines=None, end="\n"):
    """Write one train split; `end` follows every line but the last, which gets `end` too
    unless it is None (a file without its final newline)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    common_lines = [good_common(KEY), good_common(OTHER_KEY)] if common_lines is None \
        else common_lines
    for name, lines in ((SKELETON, skeleton_lines), (COMMON, common_lines)):
        text = "\n".join(lines) + ("\n" if end else "")
        (data_dir / name).write_text(text)


def with_bad_line(bad: str, at: int = 17, n: int = 30) -> list[str]:
    """n skeleton lines, line `at` (1-based) replaced by `bad`."""
    return [bad if i == at else good_skeleton(i) for i in range(1, n + 1)]


def convert(data_dir, **kwargs):
    return raw.convert_raw(data_dir, data_dir / "cache", splits=("train",), progress=False,
                           **kwargs)


def strict_error(data_dir, **kwargs) -> raw.RawFormatError:
    with pytest.raises(raw.RawFormatError) as caught:
        convert(data_dir, **kwargs)
    return caught.value


BAD_SKELETON_LINES = {
    # name: (bad line, field named in the error, words the message must contain)
    "too few columns": ("17,0,0", "common_feature_index", "3 of 6 columns"),
    "too many columns": (good_skeleton(17) + ",9", "feature_list", "7 columns"),
    "swapped separators": (f"17,0,0,{KEY},1,205\x031\x021.0", "feature_list",
                           'triple 1 "205\\x031\\x021.0" is not of the form'),
    "missing id separator": (f"17,0,0,{KEY},1,205\x0211.0", "feature_list", "is not of the form"),
    "extra separator": (f"17,0,0,{KEY},1,205\x021\x02\x031.0", "feature_list",
                        "is not of the form"),
    "trailing triple separator": (good_skeleton(17) + "\x01", "feature_list",
                                  'triple 4 "" is not of the form'),
    "non-integer feature id": (line_text([17, 0, 0, KEY], [("205", "1.5", "1.0")]),
                               "feature_list", "non-integer feature id"),
    "negative feature id": (line_text([17, 0, 0, KEY], [("205", "-5", "1.0")]),
                            "feature_list", "negative feature id"),
    "feature id too long": (line_text([17, 0, 0, KEY], [("205", "1" * 19, "1.0")]),
                            "feature_list", "longer than 18 digits"),
    "empty feature id": (line_text([17, 0, 0, KEY], [("205", "", "1.0")]), "feature_list",
                         "non-integer feature id"),
    "non-numeric value": (line_text([17, 0, 0, KEY], [("205", 1, "1,0".replace(",", "o"))]),
                          "feature_list", "non-numeric value"),
    "empty value": (line_text([17, 0, 0, KEY], [("205", 1, "")]), "feature_list",
                    "non-numeric value"),
    "non-finite value": (line_text([17, 0, 0, KEY], [("205", 1, "inf")]), "feature_list",
                         "non-finite value"),
    "unknown field id": (line_text([17, 0, 0, KEY], [("999", 1, "1.0")]), "feature_list",
                         'unknown field id "999"'),
    "user field in skeleton": (line_text([17, 0, 0, KEY], [("109_14", 1, "1.0")]),
                               "feature_list", "a field of the common_features files"),
    "non-numeric label": (line_text([17, "yes", 0, KEY], [("205", 1, "1.0")]), "click",
                          'label "yes" is not a number'),
    "label not 0/1": (line_text([17, 0, 2, KEY], [("205", 1, "1.0")]), "purchase",
                      'label "2" is not 0 or 1'),
    "label 1.0": (line_text([17, "1.0", 0, KEY], [("205", 1, "1.0")]), "click",
                  'label "1.0" is not 0 or 1'),
    "feature_num disagrees": (line_text([17, 0, 0, KEY], [("205", 1, "1.0")], feature_num=2),
                              "feature_num", "feature_num is 2 but feature_list has 1 triples"),
    "feature_num not a number": (line_text([17, 0, 0, KEY], [("205", 1, "1.0")],
                                           feature_num="x"), "feature_num", "not a non-negative"),
    "key with a non-hex char": (line_text([17, 0, 0, "0123456789abcdeg"], [("205", 1, "1.0")]),
                                "common_feature_index", "is not 16 hex characters"),
    "key too short": (line_text([17, 0, 0, KEY[:15]], [("205", 1, "1.0")]),
                      "common_feature_index", "is not 16 hex characters"),
    "sample id not an integer": (line_text(["1e3", 0, 0, KEY], [("205", 1, "1.0")]),
                                 "sample_id", '"1e3" is not a non-negative integer'),
    "key without common line": (line_text([17, 0, 0, "00000000000000ff"], [("205", 1, "1.0")]),
                                "common_feature_index", "has no line in common_features_train"),
}


@pytest.mark.parametrize("case", sorted(BAD_SKELETON_LINES))
def test_bad_skeleton_line(tmp_path, case):
    bad, field, words = BAD_SKELETON_LINES[case]
    write_files(tmp_path, with_bad_line(bad))
    error = strict_error(tmp_path, block_bytes=1024)
    message = str(error)
    assert message.startswith(f"{SKELETON} line 17, field {field}: ")
    assert words in message
    assert (error.line, error.field) == (17, field)
    assert "\x01" not in message and "\x02" not in message and "\x03" not in message
    # Lenient: the line is skipped, counted and listed; the rest comes through with its lines.
    report = convert(tmp_path, lenient=True, block_bytes=1024)
    assert report["skipped_lines"] == 1
    assert report["files"][SKELETON]["skipped_lines"] == 1
    assert report["skipped_examples"] == [[SKELETON, 17, f"field {field}: " + error.message]]
    table = pq.read_table(tmp_path / "cache" / "skeleton_train.parquet")
    assert table.column("line").to_pylist() == [i for i in range(1, 31) if i != 17]
    assert table.column("205").to_pylist() == [i for i in range(1, 31) if i != 17]
    assert report["splits"]["train"]["impressions"] == 29
    missing = report["splits"]["train"]["skipped_missing_common"]
    assert missing == (1 if case == "key without common line" else 0)


def test_message_reads_exactly_like_the_documented_example(tmp_path):
    bad = line_text([17, 0, 0, KEY], [("205", 1, "1.0"), ("206", 2, "1.0"), ("205", "abc", "1.0")])
    write_files(tmp_path, with_bad_line(bad))
    assert str(strict_error(tmp_path)) == ('sample_skeleton_train.csv line 17, field '
                                           'feature_list: triple 3 "205\\x02abc\\x031.0" has a '
                                           'non-integer feature id')


def test_missing_file(tmp_path):
    write_files(tmp_path, with_bad_line(good_skeleton(17)))
    (tmp_path / COMMON).unlink()
    error = strict_error(tmp_path)
    assert str(error).startswith(f"{COMMON}: file not found")
    with pytest.raises(raw.RawFormatError, match="file not found"):
        convert(tmp_path, lenient=True)  # a missing file is never skipped


def test_empty_file(tmp_path):
    write_files(tmp_path, with_bad_line(good_skeleton(17)))
    (tmp_path / SKELETON).write_text("")
    assert str(strict_error(tmp_path)) == f"{SKELETON}: file is empty"
    with pytest.raises(raw.RawFormatError, match="file is empty"):
        convert(tmp_path, lenient=True)


def test_truncated_last_line(tmp_path):
    lines = [good_skeleton(i) for i in range(1, 30)] + ["30,0,0,01234"]
    write_files(tmp_path, lines, end=None)
    error = strict_error(tmp_path)
    assert (error.line, error.field) == (30, "feature_num")
    assert "4 of 6 columns" in str(error)
    # Cut inside feature_list: the column count is right, the triple or the count is not.
    lines[-1] = good_skeleton(30)[:-5]
    write_files(tmp_path, lines, end=None)
    error = strict_error(tmp_path)
    assert (error.line, error.field) == (30, "feature_list")
    report = convert(tmp_path, lenient=True)
    assert report["files"][SKELETON]["lines"] == 30
    assert report["files"][SKELETON]["rows_written"] == 29


def test_empty_line(tmp_path):
    write_files(tmp_path, with_bad_line(""))
    error = strict_error(tmp_path)
    assert str(error) == f"{SKELETON} line 17: empty line"


def test_bad_common_lines(tmp_path):
    cases = {
        "too few columns": (KEY, "feature_num", "1 of 3 columns"),
        "bad key": (good_common("0123"), "common_feature_index", "not 16 hex characters"),
        "item field": (line_text([KEY], [("205", 1, "1.0")]), "feature_list",
                       'unknown field id "205" (a field of the sample_skeleton files)'),
        "bad value": (line_text([KEY], [("101", 1, "1.0"), ("109_14", 2, "0..5")]),
                      "feature_list", 'triple 2 "109_14\\x022\\x030..5" has a non-numeric value'),
        "repeated key": (good_common(OTHER_KEY), "common_feature_index",
                         f'request key "{OTHER_KEY}" repeats line 2'),
    }
    for case, (bad, field, words) in cases.items():
        common = [good_common(f"{i:016x}") for i in range(1, 9)] + [good_common(OTHER_KEY)]
        common += [good_common(f"{i:016x}") for i in range(100, 105)]
        common[0] = good_common(KEY)
        common[1] = good_common(OTHER_KEY)
        common[8] = bad
        write_files(tmp_path, [good_skeleton(i) for i in range(1, 5)], common)
        error = strict_error(tmp_path, block_bytes=512)
        assert str(error).startswith(f"{COMMON} line 9, field {field}: "), case
        assert words in str(error), case
        report = convert(tmp_path, lenient=True, block_bytes=512)
        assert report["files"][COMMON]["skipped_lines"] == 1, case
        assert report["skipped_examples"][0][:2] == [COMMON, 9], case
        assert report["splits"]["train"]["requests"] == len(common) - 1, case
        lines = pq.read_table(tmp_path / "cache" / "common_train.parquet").column("line")
        assert lines.to_pylist() == [i for i in range(1, len(common) + 1) if i != 9], case


def test_strict_reports_the_first_bad_line_whatever_the_kind(tmp_path):
    # Different checks catch these; the earliest line must win, within a block and across.
    bad_value = line_text([5, 0, 0, KEY], [("205", 1, "one")])
    bad_separator = f"9,0,0,{KEY},1,205\x031\x021.0"
    bad_columns = "12,0"
    bad_label = line_text([20, 7, 0, KEY], [("205", 1, "1.0")])
    missing_key = line_text([25, 0, 0, "00000000000000aa"], [("205", 1, "1.0")])
    kinds = {5: bad_value, 9: bad_separator, 12: bad_columns, 20: bad_label, 25: missing_key}
    for block_bytes in (200, 1024, raw.BLOCK_BYTES):
        for first in sorted(kinds):
            lines = [kinds[i] if i >= first and i in kinds else good_skeleton(i)
                     for i in range(1, 41)]
            write_files(tmp_path, lines)
            assert strict_error(tmp_path, block_bytes=block_bytes).line == first, (block_bytes,
                                                                                   first)


def test_lenient_counts_every_kind_and_keeps_line_numbers(tmp_path):
    bad = {3: "3,0,0", 4: line_text([4, 0, 0, KEY], [("205", 1, "x")]), 7: "",
           8: line_text([8, 0, 0, "00000000000000aa"], [("205", 1, "1.0")]),
           9: line_text([9, 0, 0, "00000000000000aa"], [("205", 1, "1.0")]),
           15: good_skeleton(15) + ",1,2", 40: "40,1"}
    lines = [bad.get(i, good_skeleton(i, KEY if i < 20 else OTHER_KEY)) for i in range(1, 41)]
    write_files(tmp_path, lines, end=None)
    for block_bytes in (150, 700, raw.BLOCK_BYTES):
        report = convert(tmp_path, lenient=True, block_bytes=block_bytes)
        file_report = report["files"][SKELETON]
        assert file_report["lines"] == 40
        assert file_report["skipped_lines"] == 7
        assert file_report["skipped_by_kind"] == {"format": 5, "missing_common": 2}
        assert file_report["rows_written"] == 33
        assert report["splits"]["train"]["skipped_missing_common"] == 2
        assert [(f, line) for f, line, _ in report["skipped_examples"]] == [
            (SKELETON, line) for line in sorted(bad)]
        table = pq.read_table(tmp_path / "cache" / "skeleton_train.parquet")
        kept = [i for i in range(1, 41) if i not in bad]
        assert table.column("line").to_pylist() == kept
        assert table.column("sample_id").to_pylist() == kept
        assert table.column("click").to_pylist() == [i % 2 for i in kept]


def test_lenient_lists_only_the_first_examples_but_counts_all(tmp_path):
    lines = [line_text([i, 0, 0, KEY], [("205", 1, "bad")]) if i % 3 == 0 else good_skeleton(i)
             for i in range(1, 301)]
    write_files(tmp_path, lines)
    report = convert(tmp_path, lenient=True, block_bytes=1024)
    assert report["skipped_lines"] == 100
    assert len(report["skipped_examples"]) == raw.EXAMPLES_KEPT
    assert [line for _, line, _ in report["skipped_examples"]] == list(
        range(3, 3 * raw.EXAMPLES_KEPT + 1, 3))


# ---- the vectorised checks and the per-line rule agree on every line


MUTATIONS = ["\x01", "\x02", "\x03", "\x00", ",", "-", ".", "e", "x", "_14", "", "9" * 20,
             "nan", " ", "\x04", "+"]


def mutate(rng: random.Random, text: str) -> str:
    at = rng.randrange(len(text) + 1)
    cut = rng.choice((0, 0, 1, 2))
    return text[:at] + rng.choice(MUTATIONS) + text[at + cut:]


@pytest.mark.parametrize("layout", [raw.SKELETON, raw.COMMON], ids=lambda x: x.kind)
def test_vectorised_checks_agree_with_the_per_line_rule(layout, tmp_path):
    rng = random.Random(3)
    if layout is raw.SKELETON:
        base = [good_skeleton(i) for i in range(1, 40)]
    else:
        base = [good_common(f"{i:016x}") for i in range(1, 40)]
    lines = [mutate(rng, rng.choice(base)) if rng.random() < 0.6 else rng.choice(base)
             for _ in range(3000)]
    # Only lines with the right column count reach the vectorised checks.
    lines = [x for x in lines if x.count(",") == len(layout.columns) - 1 and "\r" not in x]
    columns = list(zip(*(x.encode().split(b",") for x in lines)))
    batch = pa.RecordBatch.from_arrays([pa.array(c, pa.binary()) for c in columns],
                                       names=list(layout.columns))
    expected_bad = np.array([line_rules.row_problem(layout, [c[i] for c in columns]) is not None
                             for i in range(len(lines))])
    found_bad = np.zeros(len(lines), bool)
    rows = np.arange(len(lines))
    while True:  # the same loop as the reader: take out what is found, parse the rest again
        bad, table, _ = blocks.parse_block(blocks.Context(tmp_path, layout, True), batch, rows + 1)
        if bad is None:
            break
        found_bad[rows[bad]] = True
        batch, rows = batch.filter(pa.array(~bad)), rows[~bad]
    assert 200 < expected_bad.sum() < len(lines) - 200  # both kinds are well represented
    assert (found_bad == expected_bad).all(), [lines[i] for i in
                                              np.flatnonzero(found_bad != expected_bad)[:5]]
    assert table.num_rows == (~expected_bad).sum()


def test_schema_names_match_the_layouts():
    assert raw.output_schema(raw.SKELETON).names[:5] == list(schema.SKELETON_BASE_COLUMNS)
    assert raw.output_schema(raw.COMMON).names[:2] == list(schema.COMMON_BASE_COLUMNS)


def test_line_longer_than_the_read_block(tmp_path):
    long_line = line_text([17, 0, 0, KEY], [("210", i, "1.0") for i in range(1, 400)])
    write_files(tmp_path, with_bad_line(long_line, at=17))
    error = strict_error(tmp_path, block_bytes=2048)
    assert error.path.endswith(SKELETON) and error.line is not None and error.line <= 17
    assert "longer than the read block of 2,048 bytes" in str(error)
    with pytest.raises(raw.RawFormatError, match="longer than the read block"):
        convert(tmp_path, lenient=True, block_bytes=2048)  # not a line to skip: the reader
    assert convert(tmp_path, block_bytes=1 << 16)["splits"]["train"]["impressions"] == 30


def test_lenient_file_with_no_good_line(tmp_path):
    write_files(tmp_path, [f"{i},0,0" for i in range(1, 50)] + ["x"] * 3)
    report = convert(tmp_path, lenient=True, block_bytes=128)
    assert report["files"][SKELETON]["lines"] == 52
    assert report["files"][SKELETON]["skipped_lines"] == 52
    assert report["splits"]["train"]["impressions"] == 0
    assert pq.read_table(tmp_path / "cache" / "skeleton_train.parquet").num_rows == 0
    assert strict_error(tmp_path, block_bytes=128).line == 1
