"""Generated raw Ali-CCP file sets (Hypothesis), read by the project and by the plain reference
parser of tests/aliccp_reference.py, must agree: the Parquet cache row for row, the encoded data
set (in memory and out of core) impression for impression, and, for corrupted files, the
strict error's file, line and field and the lenient counts of skipped lines.

Counts: HYPOTHESIS_PROFILE=slow multiplies every test's examples (tests/hypothesis_profiles.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import aliccp_reference as ref
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis_profiles import examples

from ccp.data import raw, schema
from ccp.data.raw import RawFormatError

# ---------------------------------------------------------------- generating valid files

HEX = "0123456789abcdefABCDEF"
PLAIN_VALUES = ("1.0", "0.693147", "1.09861", "3", ".5", "5.", "1e-05", "-2.5", "+0.25", "0",
                "2.3979", "12.75", "1E3")


def _many_digits(sign: str, whole: int, fraction: int, width: int, exponent) -> str:
    text = f"{sign}{whole}." + (f"{fraction:0{width}d}"[-width:] if width else "")
    return text if exponent is None else f"{text}e{exponent:+d}"


# A number as the files write it: plain ones, and ones with many digits or an exponent.
VALUE_TEXTS = st.sampled_from(PLAIN_VALUES) | st.builds(
    _many_digits, st.sampled_from(["", "-", "+"]), st.integers(0, 10**6),
    st.integers(0, 10**25), st.integers(0, 25), st.none() | st.integers(-25, 25))
# A feature id: small ones (so that ids repeat and vocabularies count), up to 18 digits, or
# zero-padded to 18 digits.
FEATURE_IDS = st.integers(0, 12).map(str) | st.integers(0, 10**18 - 1).map(str) | \
    st.integers(0, 10**6).map(lambda i: str(i).zfill(18))
SAMPLE_IDS = st.integers(0, 99).map(str) | st.integers(0, 10**18 - 1).map(str)


@st.composite
def feature_list(draw, single: tuple, multi: tuple, ids: list, values: list):
    """The triples of a line, in a random order: which fields, how often (single fields may
    repeat, multi fields hold 0 to many ids) is drawn; ids and value texts cycle through the
    example's pools (so that ids repeat across lines, as vocabularies need)."""
    fields = draw(st.lists(st.sampled_from(single + multi), max_size=14))
    if draw(st.integers(0, 3)) == 0:  # now and then a long behaviour or node list
        fields += [draw(st.sampled_from(multi))] * draw(st.integers(0, 60))
        fields = draw(st.permutations(fields))
    start = draw(st.integers(0, 100))
    return [(f, ids[(start + k) % len(ids)], values[(start + 3 * k) % len(values)])
            for k, f in enumerate(fields)]


def render(columns: list[str], triples: list, count_text=None) -> str:
    body = "\x01".join(f"{f}\x02{i}\x03{v}" for f, i, v in triples)
    return ",".join([*columns, count_text or str(len(triples)), body])


@st.composite
def split_lines(draw, ids: list, values: list) -> tuple[list[str], list[str]]:
    """(common lines, skeleton lines) of one split: distinct request keys (some requests
    without impressions), impressions of random requests (keys repeat, runs need not be
    contiguous), any click/purchase pair (purchase without click too)."""
    keys = draw(st.lists(st.text(HEX, min_size=16, max_size=16), min_size=1, max_size=5,
                         unique=True))
    common = [render([key], draw(feature_list(schema.USER_SINGLE, schema.USER_MULTI, ids,
                                              values))) for key in keys]
    skeleton = []
    for _ in range(draw(st.integers(1, 10))):
        columns = [draw(SAMPLE_IDS), draw(st.sampled_from("01")), draw(st.sampled_from("01")),
                   draw(st.sampled_from(keys))]
        triples = draw(feature_list(schema.IMPRESSION_SINGLE, schema.ITEM_MULTI, ids, values))
        padded = str(len(triples)).zfill(draw(st.sampled_from([1, 1, 1, 3])))
        skeleton.append(render(columns, triples, padded))
    return common, skeleton


@st.composite
def line_ends(draw) -> tuple[str, str]:
    """(line end, end of the file): LF or CRLF; a final line end, none, or a lone CR."""
    end = draw(st.sampled_from(["\n", "\r\n"]))
    return end, draw(st.sampled_from([end, end, "", "\r"]))


@st.composite
def raw_file_sets(draw) -> dict[str, list[str]]:
    files = {}
    ids = draw(st.lists(FEATURE_IDS, min_size=1, max_size=8))
    values = draw(st.lists(VALUE_TEXTS, min_size=1, max_size=8))
    for split in schema.RAW_SPLITS:
        common, skeleton = draw(split_lines(ids, values))
        files[schema.common_name(split)] = common
        files[schema.skeleton_name(split)] = skeleton
    return files


def write(data_dir: Path, files: dict[str, list[str]], ends: dict[str, tuple[str, str]],
          boms: frozenset = frozenset()):
    """The files with their line ends; those in `boms` start with a UTF-8 byte order mark."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        end, last = ends[name]
        bom = b"\xef\xbb\xbf" if name in boms else b""
        (data_dir / name).write_bytes(bom + (end.join(lines) + last).encode("utf-8"))


def file_order() -> list[str]:
    """Files in the order the converter reads them (a split's common file first)."""
    return [name for split in schema.RAW_SPLITS
            for name in (schema.common_name(split), schema.skeleton_name(split))]


def reference_read(data_dir: Path) -> dict[str, ref.RawFile]:
    out = {}
    for split in schema.RAW_SPLITS:
        common, skeleton = ref.read_raw_split((data_dir / schema.common_name(split)).read_bytes(),
                                              (data_dir / schema.skeleton_name(split)).read_bytes())
        out[schema.common_name(split)], out[schema.skeleton_name(split)] = common, skeleton
    return out


def block_bytes_for(files: dict[str, list[str]], drawn: int) -> int:
    """The drawn read-block size, raised above the longest line (a reader requirement)."""
    longest = max(len(line.encode("utf-8")) for lines in files.values() for line in lines)
    return max(drawn, 2 * longest + 64)


def cache_rows(cache: Path, name: str) -> list[dict]:
    split = name.rsplit("_", 1)[1].removesuffix(".csv")
    kind = "skeleton" if name.startswith("sample_skeleton") else "common"
    return pq.read_table(cache / f"{kind}_{split}.parquet").to_pylist()


# ---------------------------------------------------------------- the encoded data set


def check_dataset(data, expected: dict[str, ref.RawFile], min_count: int, keep_pwc: bool):
    """The loaded data set equals the reference's: train = the train file, validation and
    test = the test file's requests by the documented key rule."""
    per_split = {}
    for split in schema.RAW_SPLITS:
        imps = ref.impressions(expected[schema.skeleton_name(split)].rows,
                               expected[schema.common_name(split)].rows, keep_pwc)
        if split == "train":
            per_split["train"] = imps
        else:
            per_split["valid"] = [i for i in imps if not ref.in_test_half(i.request_key)]
            per_split["test"] = [i for i in imps if ref.in_test_half(i.request_key)]
    ref.assert_dataset_equals(data, per_split, min_count)


@examples(40)
@given(files=raw_file_sets(), ends=st.dictionaries(st.sampled_from(file_order()), line_ends()),
       block=st.sampled_from([256, 1024, raw.BLOCK_BYTES]), workers=st.sampled_from([1, 2]),
       min_count=st.sampled_from([1, 2]), keep_pwc=st.booleans(),
       batch_rows=st.tuples(st.integers(1, 5), st.integers(1, 4)),
       boms=st.frozensets(st.sampled_from(file_order())))
def test_valid_files_load_as_the_reference_reads_them(files, ends, block, workers, min_count,
                                                      keep_pwc, batch_rows, boms):
    from ccp.data import stream_encode
    from ccp.data.encode import PrepSettings
    from ccp.data.loader import load

    ends = {name: ends.get(name, ("\n", "\n")) for name in files}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "raw"
        write(data_dir, files, ends, boms)
        expected = reference_read(data_dir)
        assert all(not f.bad for f in expected.values()), "the generator wrote a bad line"
        manifest = raw.convert_raw(data_dir, data_dir / "cache", progress=False,
                                   block_bytes=block_bytes_for(files, block), workers=workers)
        for name in files:
            assert cache_rows(data_dir / "cache", name) == expected[name].rows, name
            entry = manifest["files"][name]
            assert entry["lines"] == len(files[name]), name
            assert entry["rows_written"] == len(expected[name].rows), name
            assert entry["repaired_lines"] == expected[name].repaired_lines, name
        options = {"min_count": min_count, "keep_purchase_without_click": keep_pwc}
        data = load("aliccp", data_dir, progress=False, allow_empty=True, out_of_core=False,
                    **options)
        check_dataset(data, expected, min_count, keep_pwc)
        # Out of core, in batches of a few rows, so that batch edges fall everywhere.
        streamed = stream_encode.encoded_dataset(
            data_dir / "cache", data_dir, PrepSettings(**options), "generated", "raw", "ooc",
            progress=False, skeleton_batch_rows=batch_rows[0], common_batch_rows=batch_rows[1])
        check_dataset(streamed, expected, min_count, keep_pwc)


# ---------------------------------------------------------------- corrupted files


def _replace_cell(line: str, column: int, text: str) -> str:
    cells = line.split(",")
    if column < len(cells):
        cells[column] = text
    return ",".join(cells)


def _replace_in_triple(line: str, rnd, part: int, text: str) -> str:
    """One triple's field (0), id (1) or value (2) replaced by `text`."""
    head, _, body = line.rpartition(",")
    triples = body.split("\x01") if body else []
    if not triples:
        return line + "x"  # no triple to spoil: spoil the count instead
    k = rnd.randrange(len(triples))
    name, _, rest = triples[k].partition("\x02")
    feature_id, _, value = rest.partition("\x03")
    pieces = [name, feature_id, value]
    pieces[part] = text
    triples[k] = f"{pieces[0]}\x02{pieces[1]}\x03{pieces[2]}"
    return head + "," + "\x01".join(triples)


def _insert(line: str, rnd, text: str, before_end: bool = True) -> str:
    at = rnd.randrange(max(len(line) - before_end, 0) + 1)
    return line[:at] + text + line[at:]


CORRUPTIONS = {
    # kind: (line, rnd, is_skeleton, other keys) -> corrupted line
    "too few columns": lambda line, rnd, sk, keys: ",".join(
        line.split(",")[:rnd.randrange(1, 6 if sk else 3)]),
    "too many columns": lambda line, rnd, sk, keys: line + ",1",
    "empty line": lambda line, rnd, sk, keys: "",
    "bad label": lambda line, rnd, sk, keys: _replace_cell(
        line, rnd.choice([1, 2]), rnd.choice(["2", "x", "", "01", "1.0"])) if sk else line + ",",
    "bad sample id": lambda line, rnd, sk, keys: _replace_cell(
        line, 0, rnd.choice(["-1", "1.5", "1" * 19, "", "x"])) if sk else line + ",",
    "bad key": lambda line, rnd, sk, keys: _replace_cell(
        line, 3 if sk else 0, rnd.choice(["0123456789abcde", "0123456789abcdeg", "",
                                          "0123456789abcdef0"])),
    "bad count": lambda line, rnd, sk, keys: _replace_cell(
        line, 4 if sk else 1, rnd.choice(["999", "-1", "x", "", "1" * 19])),
    "bad separator": lambda line, rnd, sk, keys: _insert(line, rnd, rnd.choice(
        ["\x01", "\x02", "\x03", "\x00", "\x01\x01"])) if "\x02" in line else line + "\x01",
    "unknown field": lambda line, rnd, sk, keys: _replace_in_triple(
        line, rnd, 0, rnd.choice(["999", "", "205" if not sk else "101", "109_14 ", "2055"])),
    "bad feature id": lambda line, rnd, sk, keys: _replace_in_triple(
        line, rnd, 1, rnd.choice(["-5", "1.5", "1" * 19, "", "x", " 1"])),
    "bad value": lambda line, rnd, sk, keys: _replace_in_triple(
        line, rnd, 2, rnd.choice(["x", "0..5", "nan", "inf", "-inf", "1e39", "", "1e", ".",
                                  "1,0", "0x10"])),
    "lone carriage return": lambda line, rnd, sk, keys: _insert(line, rnd, "\r"),
    "non-ASCII byte": lambda line, rnd, sk, keys: _insert(line, rnd, rnd.choice(["é", "\u2028",
                                                                                  "\xa0"])),
    "missing or repeated key": lambda line, rnd, sk, keys: _replace_cell(
        line, 3 if sk else 0, rnd.choice(keys) if keys and not sk else "feedfacefeedface"),
    "cut short": lambda line, rnd, sk, keys: line[:rnd.randrange(len(line) + 1)],
}


@st.composite
def corrupted_sets(draw, max_corruptions: int):
    files = draw(raw_file_sets())
    ends = {name: draw(line_ends()) for name in files}
    rnd = draw(st.randoms(use_true_random=False))
    kinds = draw(st.lists(st.sampled_from(sorted(CORRUPTIONS)), min_size=1,
                          max_size=max_corruptions))
    for kind in kinds:
        name = draw(st.sampled_from(sorted(files)))
        lines = files[name]
        at = draw(st.integers(0, len(lines) - 1))
        is_skeleton = name.startswith("sample_skeleton")
        keys = [line.split(",")[0] for line in lines if "," in line]
        lines[at] = CORRUPTIONS[kind](lines[at], rnd, is_skeleton, keys)
    return files, ends, kinds


def _first_bad(expected: dict[str, ref.RawFile]) -> tuple[str, int | None, str | None] | None:
    """What strict reading stops at: an empty file (checked before any reading), else the
    first bad line in reading order."""
    for name in file_order():
        if expected[name].fatal:
            return name, None, None
    for name in file_order():
        if expected[name].bad:
            line, field, _ = expected[name].bad[0]
            return name, line, field
    return None


@examples(60)
@given(case=corrupted_sets(max_corruptions=1), block=st.sampled_from([256, raw.BLOCK_BYTES]))
def test_a_corrupted_line_is_named_by_file_line_and_field(case, block):
    files, ends, kinds = case
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "raw"
        write(data_dir, files, ends)
        expected = reference_read(data_dir)
        first = _first_bad(expected)
        convert = lambda: raw.convert_raw(  # noqa: E731
            data_dir, data_dir / "cache", progress=False,
            block_bytes=block_bytes_for(files, block))
        if first is None:  # the corruption happened to leave a valid file
            convert()
            return
        with pytest.raises(RawFormatError) as caught:
            convert()
        error = caught.value
        assert (Path(error.path).name, error.line, error.field) == first, (kinds, str(error))


@examples(40)
@given(case=corrupted_sets(max_corruptions=4), block=st.sampled_from([256, raw.BLOCK_BYTES]))
def test_lenient_skips_exactly_the_bad_lines(case, block):
    files, ends, kinds = case
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "raw"
        write(data_dir, files, ends)
        expected = reference_read(data_dir)
        convert = lambda: raw.convert_raw(  # noqa: E731
            data_dir, data_dir / "cache", lenient=True, progress=False,
            block_bytes=block_bytes_for(files, block))
        fatal = [name for name in file_order() if expected[name].fatal]
        if fatal:
            with pytest.raises(RawFormatError) as caught:
                convert()
            assert Path(caught.value.path).name == fatal[0]
            return
        manifest = convert()
        examples_seen = []
        for name in file_order():
            entry, want = manifest["files"][name], expected[name]
            by_kind = {}
            for _, _, kind in want.bad:
                by_kind[kind] = by_kind.get(kind, 0) + 1
            assert entry["skipped_by_kind"] == by_kind, (name, kinds)
            assert entry["skipped_lines"] == len(want.bad), (name, kinds)
            assert entry["lines"] == len(ref.physical_lines((data_dir / name).read_bytes()))
            assert cache_rows(data_dir / "cache", name) == want.rows, (name, kinds)
            examples_seen += [[name, line] for line, _, _ in want.bad]
        assert [e[:2] for e in manifest["skipped_examples"]] == \
            examples_seen[:raw.EXAMPLES_KEPT], kinds
