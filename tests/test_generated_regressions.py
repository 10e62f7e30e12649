"""The minimal failing examples the generated-input tests (test_generated_raw.py,
test_generated_processed_csv.py) shrank to, kept as plain tests: each failed before its fix."""

from __future__ import annotations

import pyarrow.parquet as pq

from bench.data import raw, schema


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
