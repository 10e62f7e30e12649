"""Generated files of the processed CSV form (Hypothesis), read by the project and by the
reference parser of tests/aliccp_reference.py, must agree: the loaded data set row for row
(codes through train-fitted vocabularies, one-id lists with their weights, dense values),
and, for corrupted files, the strict error's file, line and field and the lenient counts."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import aliccp_reference as ref
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis_profiles import examples
from test_generated_raw import FEATURE_IDS, VALUE_TEXTS, line_ends

from ccp.data.processed_csv import SPLIT_FILES
from ccp.data.raw import RawFormatError

SPLITS = ("train", "valid", "test")
UNKNOWN_COLUMNS = ("row_id", "D999", "note")


@st.composite
def split_file(draw, ids: list, values: list) -> tuple[list[str], list[list[str]]]:
    """(header, rows of cells): the expected columns in any order, maybe with unknown ones;
    1 to 12 rows, any label pair; ids and values cycle through the example's pools."""
    header = draw(st.permutations(list(ref.PROCESSED_COLUMNS) + draw(
        st.lists(st.sampled_from(UNKNOWN_COLUMNS), unique=True, max_size=2))))
    rows = []
    for _ in range(draw(st.integers(1, 12))):
        start = draw(st.integers(0, 1000))
        cells = []
        for k, name in enumerate(header):
            if name in ref.LABELS:
                cells.append(draw(st.sampled_from("01")))
            elif name.startswith("D") or name == "note":
                cells.append(values[(start + k) % len(values)])
            else:
                cells.append(ids[(start + 3 * k) % len(ids)])
        rows.append(cells)
    return list(header), rows


@st.composite
def processed_sets(draw) -> dict[str, list[str]]:
    """{file name: lines (header first)} of the three split files."""
    ids = draw(st.lists(FEATURE_IDS, min_size=1, max_size=8))
    values = draw(st.lists(VALUE_TEXTS, min_size=1, max_size=8))
    files = {}
    for split in SPLITS:
        header, rows = draw(split_file(ids, values))
        files[SPLIT_FILES[split].format(suffix="")] = [",".join(header)] + [
            ",".join(cells) for cells in rows]
    return files


def write(data_dir: Path, files: dict, ends: dict, bom: bool):
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        end, last = ends[name]
        text = (end.join(lines) + last).encode("utf-8")
        (data_dir / name).write_bytes((b"\xef\xbb\xbf" if bom else b"") + text)


def reference_read(data_dir: Path) -> dict[str, ref.ProcessedFile]:
    return {split: ref.read_processed((data_dir / SPLIT_FILES[split].format(suffix="")
                                       ).read_bytes()) for split in SPLITS}


def load_quietly(data_dir: Path, **options):
    from ccp.data.loader import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown columns are ignored with a warning
        return load("aliccp-csv", data_dir, progress=False, allow_empty=True, **options)


@examples(40)
@given(files=processed_sets(), ends=st.fixed_dictionaries(
    {SPLIT_FILES[s].format(suffix=""): line_ends()
     for s in SPLITS}), bom=st.booleans(), min_count=st.sampled_from([1, 2]),
    keep_pwc=st.booleans())
def test_valid_files_load_as_the_reference_reads_them(files, ends, bom, min_count, keep_pwc):
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        write(data_dir, files, ends, bom)
        expected = reference_read(data_dir)
        assert all(not f.bad for f in expected.values()), "the generator wrote a bad line"
        data = load_quietly(data_dir, min_count=min_count, keep_purchase_without_click=keep_pwc)
        ref.assert_dataset_equals(data, {s: ref.processed_impressions(expected[s].rows, s,
                                                                      keep_pwc)
                                         for s in SPLITS}, min_count)


def _spoil_cell(line: str, rnd, text: str) -> str:
    cells = line.split(",")
    cells[rnd.randrange(len(cells))] = text
    return ",".join(cells)


CORRUPTIONS = {
    "too few fields": lambda line, rnd: ",".join(line.split(",")[:rnd.randrange(1, 30)]),
    "too many fields": lambda line, rnd: line + ",1",
    "empty line": lambda line, rnd: "",
    "only commas": lambda line, rnd: "," * line.count(","),
    "bad cell": lambda line, rnd: _spoil_cell(line, rnd, rnd.choice(
        ["2", "x", "", "-1", "1.5", "1" * 19, "nan", "inf", "1e39", '"1"', " 1", "0x1",
         "é", "1e"])),
    "non-ASCII byte": lambda line, rnd: line[:(at := rnd.randrange(len(line) + 1))] + "\xff"
    + line[at:],
    "cut short": lambda line, rnd: line[:rnd.randrange(len(line) + 1)],
    "lone carriage return": lambda line, rnd: line[:(at := rnd.randrange(len(line) + 1))]
    + "\r" + line[at:],
}


@st.composite
def corrupted_processed(draw, max_corruptions: int):
    files = draw(processed_sets())
    ends = {name: draw(line_ends()) for name in files}
    rnd = draw(st.randoms(use_true_random=False))
    kinds = draw(st.lists(st.sampled_from(sorted(CORRUPTIONS)), min_size=1,
                          max_size=max_corruptions))
    for kind in kinds:
        lines = files[draw(st.sampled_from(sorted(files)))]
        at = draw(st.integers(1, len(lines) - 1))  # a data line: the header stays valid
        lines[at] = CORRUPTIONS[kind](lines[at], rnd)
    return files, ends, kinds


@examples(40)
@given(case=corrupted_processed(max_corruptions=1))
def test_a_corrupted_line_is_named_by_file_line_and_field(case):
    files, ends, kinds = case
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        write(data_dir, files, ends, bom=False)
        expected = reference_read(data_dir)
        first = next(((SPLIT_FILES[s].format(suffix=""), *(
            (2, None) if expected[s].fatal else expected[s].bad[0][:2]))
            for s in SPLITS if expected[s].bad or expected[s].fatal), None)
        if first is None:  # the corruption happened to leave valid files
            load_quietly(data_dir, min_count=1)
            return
        with pytest.raises(RawFormatError) as caught:
            load_quietly(data_dir, min_count=1)
        error = caught.value
        assert (Path(error.path).name, error.line, error.field) == first, (kinds, str(error))


@examples(30)
@given(case=corrupted_processed(max_corruptions=4))
def test_lenient_skips_exactly_the_bad_lines(case):
    files, ends, kinds = case
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        write(data_dir, files, ends, bom=False)
        expected = reference_read(data_dir)
        load = lambda: load_quietly(data_dir, min_count=1, lenient=True,  # noqa: E731
                                    keep_purchase_without_click=True)
        fatal = [s for s in SPLITS if expected[s].fatal]
        if fatal:
            with pytest.raises(RawFormatError) as caught:
                load()
            assert Path(caught.value.path).name == SPLIT_FILES[fatal[0]].format(suffix="")
            return
        data = load()
        for split in SPLITS:
            entry = data.info["conversion"]["files"][SPLIT_FILES[split].format(suffix="")]
            want = expected[split]
            by_kind = {}
            for _, _, kind in want.bad:
                by_kind[kind] = by_kind.get(kind, 0) + 1
            assert entry["skipped_by_kind"] == by_kind, (split, kinds)
            assert entry["lines"] == want.n_lines, (split, kinds)
            assert entry["rows_written"] == len(want.rows), (split, kinds)
            assert data.splits[split].sample_id.tolist() == [r["line"] for r in want.rows]
