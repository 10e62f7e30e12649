import shutil

import numpy as np
import pytest

from ccp.data import schema
from ccp.data.loader import EmptySplitError, load
from ccp.data.processed_csv import (
    EXPECTED_COLUMNS,
    SPLIT_FILES,
    find_split_files,
    read_processed_csv,
)
from ccp.data.raw import RawFormatError


def test_all_200_sample_rows_load(sample_data):
    assert {k: len(s) for k, s in sample_data.splits.items()} == {
        "train": 100, "valid": 50, "test": 50}
    assert sample_data.info["clicks"] == {"train": 7, "valid": 3, "test": 2}
    train = sample_data.train
    assert train.single_codes().shape == (100, len(schema.SINGLE_FIELDS))
    assert train.dense.shape == (100, len(schema.DENSE_FEATURES))
    # Each multi-valued field kept its one surviving value, weighted by its dense column.
    assert (train.user_multi["109_14"].lengths() == 1).all()
    assert (train.item_multi["210"].lengths() == 1).all()


def test_scaling_and_vocabulary_are_fitted_on_train_only(sample_data):
    train_dense = sample_data.train.dense
    assert train_dense.min() >= 0 and train_dense.max() <= 1
    # Ids never seen in train get the rare code in test, whatever their frequency there.
    item_col = schema.IMPRESSION_SINGLE.index("205")
    test_items = sample_data.test.item_codes[:, item_col]
    assert (test_items == schema.CODE_RARE).any()
    assert test_items.max() < sample_data.vocab_sizes["205"]


def test_min_count_maps_rare_ids_to_reserved_code(sample_dir):
    import pandas as pd

    data = load("aliccp-csv", sample_dir, min_count=10, progress=False)
    raw_items = pd.read_csv(sample_dir / "ali_ccp_train_sample.csv")["205"]
    counts = raw_items.map(raw_items.value_counts())
    codes = data.train.item_codes[:, schema.IMPRESSION_SINGLE.index("205")]
    assert (codes[counts.to_numpy() < 10] == schema.CODE_RARE).all()
    assert (codes[counts.to_numpy() >= 10] >= schema.FIRST_CODE).all()
    assert data.vocab_sizes["205"] == schema.FIRST_CODE + raw_items[counts >= 10].nunique()


def _copy_sample(sample_dir, tmp_path):
    for path in sample_dir.glob("*.csv"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


@pytest.mark.parametrize("mutation, expected", [
    (lambda lines: lines[:3] + ["0,x" + lines[3][3:]] + lines[4:],
     "ali_ccp_train_sample.csv line 4, field purchase"),
    (lambda lines: lines[:5] + ["2" + lines[5][1:]] + lines[6:],
     "ali_ccp_train_sample.csv line 6, field click: expected 0 or 1"),
    (lambda lines: [lines[0].replace(",D853", "")] + lines[1:],
     "ali_ccp_train_sample.csv line 1, field D853"),
    (lambda lines: lines[:1], "ali_ccp_train_sample.csv line 2: no data rows"),
    (lambda lines: [], "ali_ccp_train_sample.csv line 1: the file is empty"),
])
def test_bad_processed_csv_names_file_line_and_field(sample_dir, tmp_path, mutation, expected):
    data_dir = _copy_sample(sample_dir, tmp_path)
    path = data_dir / "ali_ccp_train_sample.csv"
    lines = path.read_text().splitlines()
    new_lines = mutation(lines)
    path.write_text("\n".join(new_lines) + ("\n" if new_lines else ""))
    with pytest.raises(ValueError, match=expected.replace(".", r"\.")):
        load("aliccp-csv", data_dir, progress=False)


def test_missing_processed_csv_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="processed Ali-CCP CSV files not found"):
        load("aliccp-csv", tmp_path, progress=False)


def test_request_table_is_shared_not_copied(sample_data):
    clicked = sample_data.train.clicked()
    assert clicked.user_codes is sample_data.train.user_codes
    assert len(clicked) == 7 and (clicked.click == 1).all()
    np.testing.assert_array_equal(clicked.single_codes()[:, :9],
                                  sample_data.train.user_codes[clicked.request])


# ---------------------------------------------------------------- files built in the test

HEADER = ",".join(EXPECTED_COLUMNS)


def good_line(i: int) -> str:
    labels = [i % 2, int(i % 4 == 1)]
    ids = [(i * (k + 1)) % 5 for k in range(len(schema.PROCESSED_SPARSE))]
    dense = [f"{(i + k) % 7 / 8}" for k in range(len(schema.PROCESSED_DENSE))]
    return ",".join(map(str, labels + ids + dense))


def replaced(line: str, column: str, text: str) -> str:
    cells = line.split(",")
    cells[EXPECTED_COLUMNS.index(column)] = text
    return ",".join(cells)


def write_splits(data_dir, train_body=None, n_rows=12, header=HEADER, end="\n", suffix=""):
    """The three split files of good rows; the train file gets `header` and, if given,
    `train_body` (its lines after the header). Returns the train file's path."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for split, pattern in SPLIT_FILES.items():
        lines = [HEADER, *(good_line(i) for i in range(n_rows))]
        if split == "train":
            lines = [header, *(lines[1:] if train_body is None else train_body)]
        (data_dir / pattern.format(suffix=suffix)).write_text(end.join(lines) + end)
    return data_dir / SPLIT_FILES["train"].format(suffix="")


def body_with(line_no: int, text: str, n_rows: int = 12) -> list[str]:
    """Good rows with physical line `line_no` (the header is line 1) replaced by `text`."""
    body = [good_line(i) for i in range(n_rows)]
    body[line_no - 2] = text
    return body


def strict_message(data_dir) -> str:
    with pytest.raises(RawFormatError) as caught:
        load("aliccp-csv", data_dir, min_count=1, progress=False)
    return str(caught.value)


def test_built_files_are_read_value_for_value(tmp_path):
    path = write_splits(tmp_path)
    part, entry = read_processed_csv(path, "train")
    body = [line.split(",") for line in path.read_text().splitlines()[1:]]
    column = {c: [row[i] for row in body] for i, c in enumerate(EXPECTED_COLUMNS)}
    assert part.skeleton.column("click").to_pylist() == [int(v) for v in column["click"]]
    assert part.skeleton.column("205").to_pylist() == [int(v) for v in column["205"]]
    assert part.common.column("101").to_pylist() == [int(v) for v in column["101"]]
    np.testing.assert_array_equal(part.skeleton.column("853_value").to_numpy(),
                                  np.array(column["D853"], dtype=np.float32))
    assert part.skeleton.column("line").to_pylist() == list(range(2, 14))
    assert entry["lines"] == entry["rows_written"] == 12 and entry["skipped_lines"] == 0


def test_columns_in_another_order_crlf_and_bom_read_the_same(tmp_path):
    reference, _ = read_processed_csv(write_splits(tmp_path / "a"), "train")
    order = list(reversed(EXPECTED_COLUMNS))
    body = [",".join(dict(zip(EXPECTED_COLUMNS, good_line(i).split(",")))[c] for c in order)
            for i in range(12)]
    path = write_splits(tmp_path / "b", body, header="\ufeff" + ",".join(order), end="\r\n")
    part, _ = read_processed_csv(path, "train")
    assert part.skeleton.equals(reference.skeleton) and part.common.equals(reference.common)


# 1. Non-finite dense values, also beyond float32, are errors (they made a column all NaN).
@pytest.mark.parametrize("text, extra", [("inf", ""), ("-inf", ""), ("1e400", ""), ("nan", ""),
                                         ("NaN", ""), ("1e39", " (beyond the float32 range)"),
                                         ("", ""), ("0.5x", ""), ("0x10", "")])
def test_dense_value_must_be_a_finite_float32(tmp_path, text, extra):
    good = good_line(5)
    write_splits(tmp_path, body_with(7, replaced(good, "D853", text)))
    assert strict_message(tmp_path) == (f"ali_ccp_train.csv line 7, field D853: expected a "
                                        f"finite number, got {text!r}{extra}")


def test_large_but_float32_finite_dense_value_is_kept(tmp_path):
    path = write_splits(tmp_path, body_with(3, replaced(good_line(1), "D508", "3e38")))
    part, _ = read_processed_csv(path, "train")
    assert part.skeleton.column("508_value")[1].as_py() == pytest.approx(3e38, rel=1e-6)


# 2. Line numbers are physical: blank lines count, and a quote does not join lines.
def test_empty_line_is_an_error_at_its_own_line(tmp_path):
    write_splits(tmp_path, body_with(4, ""))
    assert strict_message(tmp_path) == "ali_ccp_train.csv line 4: empty line"


def test_line_numbers_after_a_skipped_blank_line_are_physical(tmp_path):
    body = body_with(4, "")
    body[9 - 2] = replaced(body[9 - 2], "purchase", "x")
    path = write_splits(tmp_path, body)
    part, entry = read_processed_csv(path, "train", lenient=True)
    assert entry["skipped_by_kind"] == {"empty_line": 1, "label": 1}
    assert entry["skipped_examples"] == [
        ["ali_ccp_train.csv", 4, "empty line"],
        ["ali_ccp_train.csv", 9, "field purchase: expected 0 or 1, got 'x'"]]
    assert part.skeleton.column("line").to_pylist() == [2, 3, 5, 6, 7, 8, 10, 11, 12, 13]


def test_quoted_newline_is_reported_where_it_starts(tmp_path):
    good = good_line(3)
    body = [good_line(i) for i in range(12)]
    body[5 - 2:5 - 1] = ['"' + good[0], '"' + good[1:]]  # a value split over lines 5 and 6
    write_splits(tmp_path, body)
    assert strict_message(tmp_path).startswith(
        "ali_ccp_train.csv line 5, field purchase: line has 1 of 33 fields (missing purchase, "
        "101, 121, 122, 124, ...) (quoted values are not supported): ")


# 3. Errors that came from the parser name the file, the line and where known the field.
def test_extra_field_names_file_and_line(tmp_path):
    write_splits(tmp_path, body_with(5, good_line(3) + ",7"))
    assert strict_message(tmp_path).startswith(
        "ali_ccp_train.csv line 5: line has 34 fields, the header has 33: '1,0,3,")


def test_missing_field_names_the_first_missing_column(tmp_path):
    write_splits(tmp_path, body_with(6, good_line(3).rsplit(",", 2)[0]))
    assert strict_message(tmp_path).startswith(
        "ali_ccp_train.csv line 6, field D702: line has 31 of 33 fields (missing D702, D853)")


@pytest.mark.parametrize("column, expected", [
    ("D508", "expected a finite number, got b'0.4\\xe9' (not UTF-8)"),
    ("205", "expected a non-negative integer id of at most 18 digits, got b'0.4\\xe9' "
            "(not UTF-8)")])
def test_non_utf8_byte_names_file_line_and_field(tmp_path, column, expected):
    path = write_splits(tmp_path)
    lines = path.read_bytes().split(b"\n")
    cells = lines[2].split(b",")
    cells[EXPECTED_COLUMNS.index(column)] = b"0.4\xe9"
    lines[2] = b",".join(cells)
    path.write_bytes(b"\n".join(lines))
    assert strict_message(tmp_path) == f"ali_ccp_train.csv line 3, field {column}: {expected}"


def test_non_utf8_header_is_a_clear_error(tmp_path):
    path = write_splits(tmp_path)
    path.write_bytes(b"cl\xe9ck" + path.read_bytes()[len("click"):])
    assert strict_message(tmp_path).startswith(
        "ali_ccp_train.csv line 1: the header is not UTF-8 text")


# 4. Values that were accepted silently.
@pytest.mark.parametrize("text", ["99999999999999999999", "1234567890123456789", "-7", "2.0",
                                  "1e3", " 3", "+3", ""])
def test_sparse_id_must_be_a_plain_non_negative_integer(tmp_path, text):
    write_splits(tmp_path, body_with(8, replaced(good_line(2), "205", text)))
    assert strict_message(tmp_path) == (f"ali_ccp_train.csv line 8, field 205: expected a "
                                        f"non-negative integer id of at most 18 digits, got "
                                        f"{text!r}")


def test_largest_allowed_id_and_leading_zeros_are_kept(tmp_path):
    body = body_with(2, replaced(good_line(0), "205", "999999999999999999"))
    body[1] = replaced(body[1], "205", "007")
    part, _ = read_processed_csv(write_splits(tmp_path, body), "train")
    assert part.skeleton.column("205").to_pylist()[:2] == [999999999999999999, 7]


@pytest.mark.parametrize("text", ["1.0", " 1", "1e3", "01", "true", "-0", ""])
def test_label_must_be_exactly_0_or_1(tmp_path, text):
    write_splits(tmp_path, body_with(6, replaced(good_line(1), "click", text)))
    assert strict_message(tmp_path) == (f"ali_ccp_train.csv line 6, field click: expected 0 or "
                                        f"1, got {text!r}")


def test_duplicated_column_is_an_error(tmp_path):
    write_splits(tmp_path, [line + ",0" for line in map(good_line, range(12))],
                 header=HEADER + ",click")
    assert strict_message(tmp_path) == ("ali_ccp_train.csv line 1, field click: column appears "
                                        "2 times in the header (columns 1, 34)")


def test_unknown_column_is_ignored_with_a_warning_and_recorded(tmp_path):
    write_splits(tmp_path, [line + ",9" for line in map(good_line, range(12))],
                 header=HEADER + ",extra")
    with pytest.warns(UserWarning, match="ali_ccp_train.csv line 1: ignoring unknown column"
                                         r"\(s\) 'extra'"):
        data = load("aliccp-csv", tmp_path, min_count=1, progress=False)
    files = data.info["conversion"]["files"]
    assert files["ali_ccp_train.csv"]["ignored_columns"] == ["extra"]
    assert "ignored_columns" not in files["ali_ccp_val.csv"]
    assert len(data.train) + data.info["purchase_without_click"]["train"] == 12


@pytest.mark.parametrize("header, expected", [
    (HEADER.replace(",", ", "), "field purchase: column missing from the header (found "
                                "' purchase' instead: names without spaces or quotes)"),
    (HEADER.replace(",", ";"), "field click: the header has one column, 'click;purchase;"),
])
def test_header_problems_say_what_was_found(tmp_path, header, expected):
    write_splits(tmp_path, header=header)
    assert strict_message(tmp_path).startswith(f"ali_ccp_train.csv line 1, {expected}")


def test_incomplete_split_set_names_the_missing_file_and_does_not_fall_back(tmp_path):
    write_splits(tmp_path, suffix="_sample")
    write_splits(tmp_path)
    (tmp_path / "ali_ccp_test.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"ali_ccp_test\.csv not found \(found "
                                                r"ali_ccp_train\.csv, ali_ccp_val\.csv"):
        find_split_files(tmp_path)
    (tmp_path / "ali_ccp_val_sample.csv").unlink()
    for name in ("ali_ccp_train.csv", "ali_ccp_val.csv"):
        (tmp_path / name).unlink()
    with pytest.raises(FileNotFoundError, match=r"ali_ccp_val_sample\.csv not found"):
        find_split_files(tmp_path)


def test_complete_real_set_wins_over_sample_set(tmp_path):
    write_splits(tmp_path, suffix="_sample")
    write_splits(tmp_path)
    assert {p.name for p in find_split_files(tmp_path).values()} == {
        "ali_ccp_train.csv", "ali_ccp_val.csv", "ali_ccp_test.csv"}


# 5. --lenient: bad lines skipped, counted by kind, first ones listed; nothing lost unsaid.
def test_lenient_skips_and_counts_every_bad_line(tmp_path):
    body = [good_line(i) for i in range(20)]
    body[5 - 2] = replaced(body[5 - 2], "D508", "-inf")
    body[8 - 2] = ""
    body[10 - 2] = body[10 - 2] + ",7"
    body[12 - 2] = replaced(body[12 - 2], "click", "1.0")
    body[13 - 2] = replaced(replaced(body[13 - 2], "205", "-7"), "D853", "inf")  # two problems
    body[15 - 2] = body[15 - 2].rsplit(",", 1)[0]
    write_splits(tmp_path, body)
    data = load("aliccp-csv", tmp_path, min_count=1, lenient=True, progress=False)
    conversion = data.info["conversion"]
    train = conversion["files"]["ali_ccp_train.csv"]
    assert train["skipped_by_kind"] == {"field_count": 2, "empty_line": 1, "label": 1,
                                        "sparse_id": 1, "dense_value": 1}
    assert train["lines"] == 20 and train["rows_written"] == 14 and train["skipped_lines"] == 6
    assert conversion["skipped_lines"] == 6 and conversion["settings"] == {"lenient": True}
    assert [e[1] for e in conversion["skipped_examples"]] == [5, 8, 10, 12, 13, 15]
    assert conversion["skipped_examples"][4] == [
        "ali_ccp_train.csv", 13, "field 205: expected a non-negative integer id of at most 18 "
                                 "digits, got '-7'"]
    without_click = data.info["purchase_without_click"]["train"]
    assert len(data.train) + without_click == 14
    strict = load("aliccp-csv", write_splits(tmp_path / "good").parent, min_count=1,
                  progress=False)
    assert strict.info["conversion"]["skipped_lines"] == 0
    assert strict.fingerprint != load("aliccp-csv", tmp_path / "good", min_count=1,
                                      lenient=True, progress=False).fingerprint


def test_lenient_keeps_only_the_first_examples(tmp_path):
    body = [replaced(good_line(i), "purchase", "2") if i % 2 else good_line(i)
            for i in range(100)]
    _, entry = read_processed_csv(write_splits(tmp_path, body), "train", lenient=True)
    assert entry["skipped_by_kind"] == {"label": 50}
    assert [e[1] for e in entry["skipped_examples"]] == list(range(3, 3 + 2 * 20, 2))


def test_strict_reports_the_earliest_bad_line_whatever_its_kind(tmp_path):
    body = body_with(9, replaced(good_line(1), "click", "x"))
    body[11 - 2] = body[11 - 2] + ",1"
    body[6 - 2] = replaced(body[6 - 2], "D702", "inf")
    write_splits(tmp_path, body)
    assert strict_message(tmp_path).startswith("ali_ccp_train.csv line 6, field D702:")


@pytest.mark.parametrize("split", ["valid", "test"])
def test_lenient_split_with_every_line_skipped_names_its_own_file(tmp_path, split):
    write_splits(tmp_path)
    path = tmp_path / SPLIT_FILES[split].format(suffix="")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:1] + ["x" + line[1:] for line in lines[1:]]) + "\n")
    with pytest.raises(EmptySplitError) as caught:
        load("aliccp-csv", tmp_path, min_count=1, lenient=True, progress=False)
    assert f"12 of 12 lines of {path.name} were skipped (label 12)" in str(caught.value)


def test_records_of_the_processed_csv_form_do_not_call_rows_requests(sample_data):
    """The form has no request key: the unit's name says so (it is never plain "request")."""
    from bench import harness

    test = sample_data.test
    outputs = {k: np.linspace(0.01, 0.5, len(test)) for k in ("ctr", "cvr", "ctcvr")}
    fields = harness.evaluate(outputs, test, sample_data.fingerprint, 10, tasks=("ctr",))["ctr"]
    assert "no request key" in fields["resampling_rule"]
    assert "no request key" in fields["ci_method"]
    assert fields["resampling_unit"] in ("user", "request", "row")
