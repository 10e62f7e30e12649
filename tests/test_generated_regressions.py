"""The minimal failing examples the generated-input tests (test_generated_raw.py,
test_generated_processed_csv.py) shrank to, kept as plain tests: each failed before its fix."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from ccp.data import raw, schema


def write_raw(data_dir, files: dict[str, str]):
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (data_dir / name).write_text(text)


def test_lenient_common_file_without_one_good_line(tmp_path):
    """Every line of a common file bad: lenient conversion crashed on the skeleton file
    (TypeError: argument of type 'NoneType' is not iterable) instead of counting each of its
    lines as a request key without a common line."""
    key = "0000000000000000"
    write_raw(tmp_path, {schema.common_name("train"): f"{key},0,\n",
                         schema.skeleton_name("train"): f"0,0,0,{key},0,\n",
                         schema.common_name("test"): f"{key},999,\n",
                         schema.skeleton_name("test"): f"0,0,0,{key},0,\n"})
    report = raw.convert_raw(tmp_path, tmp_path / "cache", lenient=True, progress=False,
                             block_bytes=256)
    assert report["files"][schema.common_name("test")]["skipped_by_kind"] == {"format": 1}
    assert report["files"][schema.skeleton_name("test")]["skipped_by_kind"] == {
        "missing_common": 1}
    assert report["files"][schema.skeleton_name("train")]["skipped_lines"] == 0
    assert pq.read_table(tmp_path / "cache" / "skeleton_test.parquet").num_rows == 0


def test_processed_csv_lone_carriage_return_is_a_bad_character_of_its_line(tmp_path):
    """A carriage return at the start of a data line (not part of a CRLF line end): pyarrow
    took it for a line break, so lenient reading counted an "empty line", kept the rest of the
    line as a row, and numbered every later line one too high. It is now, as in the raw
    reader, a bad character of its own physical line, named with its column."""
    from ccp.data.loader import load
    from ccp.data.processed_csv import EXPECTED_COLUMNS, SPLIT_FILES
    from ccp.data.raw import RawFormatError

    header = ",".join(EXPECTED_COLUMNS)
    row = ",".join(["0"] * 25 + ["1.0"] * 8)
    bodies = {"train": [row, row], "valid": [row, row], "test": ["\r" + row, row, "x"]}
    for split, body in bodies.items():
        (tmp_path / SPLIT_FILES[split].format(suffix="")).write_text(
            "\n".join([header, *body]) + "\n", newline="")
    with pytest.raises(RawFormatError) as caught:
        load("aliccp-csv", tmp_path, min_count=1, progress=False)
    assert (caught.value.line, caught.value.field) == (2, "click")
    assert "carriage return" in str(caught.value)
    data = load("aliccp-csv", tmp_path, min_count=1, progress=False, lenient=True,
                allow_empty=True)
    entry = data.info["conversion"]["files"][SPLIT_FILES["test"].format(suffix="")]
    assert entry["skipped_by_kind"] == {"carriage_return": 1, "field_count": 1}
    assert entry["lines"] == 3 and entry["rows_written"] == 1
    assert data.test.sample_id.tolist() == [3]  # the good row keeps its physical line


def test_mean_weight_of_equal_weights_is_that_weight(tmp_path):
    """Two requests whose behaviour weights are all 9.1e-15, one with 59 of them and one with
    1: the float32 running sum made the 59-weight mean differ in its last bits, the min-max
    scaling fitted on train turned that into a span of 8.5e-22, and the two requests got
    dense values 0 and 1 for the same mean weight. Sums now accumulate in float64."""
    from ccp.data.loader import load

    key_a, key_b = "0000000000000000", "71E54E891d33A22C"
    triple = "109_14\x020\x0391.e-16"
    write_raw(tmp_path, {
        schema.common_name("train"): f"{key_a},59,{chr(1).join([triple] * 59)}\n"
                                     f"{key_b},1,{triple}\n",
        schema.skeleton_name("train"): f"1,0,0,{key_a},0,\n2,0,0,{key_b},0,\n",
        schema.common_name("test"): f"{key_a},0,\n",
        schema.skeleton_name("test"): f"3,0,0,{key_a},0,\n"})
    data = load("aliccp", tmp_path, min_count=1, progress=False, allow_empty=True,
                out_of_core=False)
    column = schema.DENSE_FEATURES.index("109_14_mean_weight")
    assert data.info["dense_scaling"]["span"][column] == 1.0
    assert data.train.dense[:, column].tolist() == [0.0, 0.0]
    means = data.train.user_multi["109_14"].row_mean_weight()
    assert means[0] == means[1] == np.float32(9.1e-15)
