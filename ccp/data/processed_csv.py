"""Reader for the common processed CSV form (the layout of shared/data/aliccp-sample).

Columns: click, purchase, the 23 sparse fields as integer codes, 8 dense columns. Only the last
value of each multi-valued field survives in this form, so each becomes a one-element list;
its dense column (D109_14 ...) becomes that element's weight, and D508 ... the combination values.
Every row is its own request: the form has no request key.

What a file must hold, checked column by column with pyarrow compute (no Python loop per row):
a header naming every expected column once (columns in any order; unknown ones are ignored with
a warning and listed in the report), then one row per line, unquoted, with as many fields as the
header. Labels are exactly 0 or 1, sparse ids plain non-negative integers of at most 18 digits
(they fit int64), dense values numbers that stay finite as float32. These are the raw reader's
rules (ccp.data.raw), and errors read the same: `file line N, field F: what is wrong`, with
physical line numbers (the header is line 1; blank lines count). Strict mode (the default) stops
at the first bad line; lenient mode skips bad lines and counts them by kind in the report, which
has the shape of the raw reader's manifest (files, skipped_lines, skipped_examples).
"""

from __future__ import annotations

import mmap
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ccp.data import schema
from ccp.data.encode import RawPart
from ccp.data.raw import EXAMPLES_KEPT, MAX_INT_DIGITS, RawFormatError

LABELS = ("click", "purchase")
EXPECTED_COLUMNS = LABELS + schema.PROCESSED_SPARSE + schema.PROCESSED_DENSE
# File names of the three splits as the common pipeline writes them.
SPLIT_FILES = {"train": "ali_ccp_train{suffix}.csv", "valid": "ali_ccp_val{suffix}.csv",
               "test": "ali_ccp_test{suffix}.csv"}
# The numbers pyarrow's float cast accepts, less inf and nan (which it also accepts).
NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
HEADER_LIMIT = 1 << 20  # bytes read for the header line
SHOWN_CHARS = 80  # of a bad value or line in a message


def find_split_files(data_dir: Path) -> dict[str, Path]:
    """The three split files: ali_ccp_{train,val,test}.csv, or else the _sample ones. A set
    with some files but not all is an error naming the missing ones, never a fallback."""
    data_dir = Path(data_dir)
    for suffix in ("", "_sample"):
        paths = {s: data_dir / p.format(suffix=suffix) for s, p in SPLIT_FILES.items()}
        missing = [p.name for p in paths.values() if not p.is_file()]
        if not missing:
            return paths
        if len(missing) < len(paths):
            found = [p.name for p in paths.values() if p.name not in missing]
            raise FileNotFoundError(f"{data_dir}: {', '.join(missing)} not found (found "
                                    f"{', '.join(found)}; the three split files go together)")
    expected = ", ".join(p.format(suffix="[_sample]") for p in SPLIT_FILES.values())
    raise FileNotFoundError(f"{data_dir}: processed Ali-CCP CSV files not found "
                            f"(expected {expected})")


def _shown(value: bytes) -> str:
    """A cell's text for a message: repr of the text, or of the bytes if not UTF-8."""
    clipped = value[:SHOWN_CHARS] + (b"..." if len(value) > SHOWN_CHARS else b"")
    try:
        return repr(clipped.decode("utf-8"))
    except UnicodeDecodeError:
        return f"{clipped!r} (not UTF-8)"


def _read_header(path: Path) -> list[str]:
    """Column names of line 1, checked: each expected one present, none twice."""
    with open(path, "rb") as file:
        line = file.readline(HEADER_LIMIT)
    line = line.removeprefix(b"\xef\xbb\xbf").rstrip(b"\r\n")
    try:
        header = line.decode("utf-8").split(",")
    except UnicodeDecodeError as error:
        raise RawFormatError(path, 1, None, f"the header is not UTF-8 text ({error}): "
                                            f"{_shown(line)}") from None
    for name in header:
        if header.count(name) > 1:
            places = [str(i + 1) for i, n in enumerate(header) if n == name]
            raise RawFormatError(path, 1, name, f"column appears {len(places)} times in the "
                                                f"header (columns {', '.join(places)})")
    missing = [c for c in EXPECTED_COLUMNS if c not in header]
    if not missing:
        return header
    if len(header) == 1:
        problem = (f"the header has one column, {_shown(line)}: fields must be separated by "
                   "commas")
    else:
        near = [h for h in header if h.strip(' \t"\'') == missing[0]]
        if near:
            problem = (f"column missing from the header (found {near[0]!r} instead: names "
                       "without spaces or quotes)")
        else:
            found = ", ".join(map(repr, header))
            found = found[:200] + ("..." if len(found) > 200 else "")
            problem = f"column missing from the header (found {len(header)} columns: {found})"
    raise RawFormatError(path, 1, missing[0], problem)


_LONE_CR = re.compile(rb"\r(?!\n)")
CARRIAGE_RETURN = "carriage return (\\r) inside the line, not part of a \\r\\n line end"


class _LoneCarriageReturns:
    """The file as pyarrow reads it, except that a carriage return that does not end a CRLF
    line end (nor the file) becomes a space, its physical line and column kept in `found`.
    pyarrow would take it for a line break and number every later line one too high; as in
    the raw reader, it is a bad character of its own line. A clean block costs two C scans
    (find \\r, count \\n) and is passed on uncopied."""

    closed = False

    def __init__(self, path: Path, header: list[str]):
        self.file = open(path, "rb")
        self.header = header
        self.line = 1  # physical line of the next byte
        self.commas = 0  # commas since the start of that line
        self.found: dict[int, str | None] = {}  # line -> column the \\r is in
        self.held = b""  # a \\r held back to stay with the \\n that follows it

    def read(self, n: int = -1) -> bytes:
        want = -1 if n is None or n < 0 else max(n - len(self.held), 1)
        data = self.held + self.file.read(want)
        self.held = b""
        if data.endswith(b"\r") and self.file.peek(1)[:1] == b"\n":
            data, self.held = ((data[:-1], b"\r") if len(data) > 1
                               else (data + self.file.read(1), b""))
        if b"\r" in data:
            data = self._mark(data)
        last_line_end = data.rfind(b"\n")
        self.commas = (self.commas if last_line_end < 0 else 0) + data.count(b",",
                                                                          last_line_end + 1)
        self.line += data.count(b"\n")
        return data

    def _mark(self, data: bytes) -> bytes:
        at_end = not self.held and not self.file.peek(1)
        pieces, done = [], 0
        for at in (m.start() for m in _LONE_CR.finditer(data)):
            if at_end and at == len(data) - 1:
                break  # the last line may end with a lone \\r
            line = self.line + data.count(b"\n", 0, at)
            start = data.rfind(b"\n", 0, at) + 1
            commas = (self.commas if start == 0 else 0) + data.count(b",", start, at)
            if line > 1:  # the header is read and checked on its own
                self.found.setdefault(line, self.header[commas] if commas < len(self.header)
                                      else None)
            pieces += [data[done:at], b" "]
            done = at + 1
        return b"".join(pieces + [data[done:]])

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.file.close()
        self.closed = True


def _has_lone_carriage_return(path: Path, block_bytes: int = 8 << 20) -> bool:
    """Whether a carriage return stands anywhere but in a CRLF line end or at the very end,
    so that the usual file is read by pyarrow directly, not through Python. A file without
    any \\r costs one memchr over a memory map (measured: +20% of the read's CPU time when
    every block was copied and scanned); a CRLF file, two C counts per block."""
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
        start = view.find(b"\r")
        carry = b""
        while 0 <= start < len(view):
            data = carry + view[start:start + block_bytes]
            start += block_bytes
            carry = b"\r" if data.endswith(b"\r") else b""  # decided by the next byte
            end = len(data) - len(carry)
            if data.count(b"\r", 0, end) != data.count(b"\r\n", 0, end):
                return True
    return False


def _read_rows(path: Path, header: list[str]) -> tuple[pa.Table, list, dict]:
    """Every data line as bytes; lines with the wrong number of fields are left out and
    returned as (line, n_fields, text), text kept for the first few only; and the lines with
    a lone carriage return (line -> column)."""
    wrong_count = []

    def on_wrong_count(row):
        text = row.text[:200] if len(wrong_count) < 2 * EXAMPLES_KEPT else ""
        wrong_count.append((row.number, row.actual_columns, text))
        return "skip"

    source = _LoneCarriageReturns(path, header) if _has_lone_carriage_return(path) else None
    try:
        table = pacsv.read_csv(
            source or path,
            # Serial: row numbers are known only then (and it is as fast here on 2 cores).
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1, use_threads=False),
            # No quoting, so that every line is one row and line numbers are physical ones.
            parse_options=pacsv.ParseOptions(quote_char=False, double_quote=False,
                                             escape_char=False, newlines_in_values=False,
                                             ignore_empty_lines=False,
                                             invalid_row_handler=on_wrong_count),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(EXPECTED_COLUMNS),
                column_types={c: pa.binary() for c in EXPECTED_COLUMNS},
                strings_can_be_null=False, check_utf8=False))
    except pa.ArrowInvalid as error:
        raise RawFormatError(path, None, None, f"unreadable as CSV: {error}") from None
    finally:
        if source is not None:
            source.close()
    return table, wrong_count, source.found if source is not None else {}


def _physical_lines(n_rows: int, left_out: list[int]) -> np.ndarray:
    """Line numbers of the table's rows: from line 2 on, all but the lines left out."""
    candidates = np.arange(2, 2 + n_rows + len(left_out), dtype=np.int64)
    return candidates[~np.isin(candidates, np.array(left_out, dtype=np.int64))]


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Bytes seen as text without UTF-8 validation: the checks only accept ASCII anyway."""
    return pa.chunked_array([c.view(pa.string()) for c in column.chunks], pa.string())


def _mask(array) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)


@dataclass
class _Check:
    """The bad cells of one column (or, for field None, whole lines) and what is wrong."""

    field: str | None
    kind: str  # the key it is counted under in lenient mode
    bad: np.ndarray  # bool per table row
    explain: Callable[[int], str]  # table row -> message


def _labels(column: pa.ChunkedArray, name: str) -> tuple[np.ndarray, _Check | None]:
    good = _mask(pc.is_in(column, value_set=pa.array([b"0", b"1"], pa.binary())))
    values = _mask(pc.equal(column, pa.scalar(b"1", pa.binary()))).astype(np.int8)
    if good.all():
        return values, None
    return values, _Check(name, "label", ~good, lambda row: (
        f"expected 0 or 1, got {_shown(column[row].as_py())}"))


def _ids(column: pa.ChunkedArray, name: str) -> tuple[np.ndarray, _Check | None]:
    text = _as_text(column)
    good = pc.and_(pc.ascii_is_decimal(text), pc.less_equal(pc.binary_length(column),
                                                            MAX_INT_DIGITS))
    if pc.all(good).as_py():
        return pc.cast(text, pa.int64()).to_numpy(), None
    values = pc.cast(pc.if_else(good, text, pa.scalar("0")), pa.int64()).to_numpy()
    return values, _Check(name, "sparse_id", ~_mask(good), lambda row: (
        f"expected a non-negative integer id of at most {MAX_INT_DIGITS} digits, got "
        f"{_shown(column[row].as_py())}"))


def _dense(column: pa.ChunkedArray, name: str) -> tuple[np.ndarray, _Check | None]:
    text = _as_text(column)
    try:  # the fast path: every cell is a number (inf and nan too; caught below)
        wide = pc.cast(text, pa.float64()).to_numpy()
        syntax_bad = np.zeros(len(wide), bool)
    except pa.ArrowInvalid:
        good = pc.match_substring_regex(column, NUMBER)
        wide = pc.cast(pc.if_else(good, text, pa.scalar("0")), pa.float64()).to_numpy()
        syntax_bad = ~_mask(good)
    with np.errstate(over="ignore"):
        values = wide.astype(np.float32)
    bad = syntax_bad | ~np.isfinite(values)
    if not bad.any():
        return values, None

    def explain(row: int) -> str:
        message = f"expected a finite number, got {_shown(column[row].as_py())}"
        if not syntax_bad[row] and np.isfinite(wide[row]):
            message += " (beyond the float32 range)"
        return message

    return values, _Check(name, "dense_value", bad, explain)


def _empty_lines(table: pa.Table) -> _Check:
    """Rows whose every cell is empty: pyarrow reads an empty line as such a row."""
    empty = np.logical_and.reduce([_mask(pc.equal(pc.binary_length(table[c]), 0))
                                   for c in EXPECTED_COLUMNS])
    return _Check(None, "empty_line", empty, lambda row: "empty line")


def _wrong_count_message(header: list[str], n_fields: int, text: str) -> tuple[str | None, str]:
    expected = len(header)
    hint = " (quoted values are not supported)" if '"' in text else ""
    shown = repr(text[:SHOWN_CHARS] + ("..." if len(text) > SHOWN_CHARS else ""))
    if n_fields < expected:
        missing = header[n_fields:]
        names = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        return header[n_fields], (f"line has {n_fields} of {expected} fields (missing {names})"
                                  f"{hint}: {shown}")
    return None, f"line has {n_fields} fields, the header has {expected}{hint}: {shown}"


def read_processed_csv(path: Path, split: str, lenient: bool = False) -> tuple[RawPart, dict]:
    """One split file -> (its raw part, its report entry: lines, rows kept, skipped by kind,
    the first skipped lines as [file, line, reason], unknown columns ignored)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise RawFormatError(path, 1, None, "the file is empty (expected a header row)")
    header = _read_header(path)
    ignored = [c for c in header if c not in EXPECTED_COLUMNS]
    if ignored:
        warnings.warn(f"{path.name} line 1: ignoring unknown column(s) "
                      f"{', '.join(map(repr, ignored))}", stacklevel=2)
    table, wrong_count, lone_returns = _read_rows(path, header)
    n_lines = table.num_rows + len(wrong_count)
    if n_lines == 0:
        raise RawFormatError(path, 2, None, "no data rows after the header")
    lines = _physical_lines(table.num_rows, [line for line, _, _ in wrong_count])

    checks = []
    labels, codes, dense = {}, {}, {}
    for name in LABELS:
        labels[name], check = _labels(table[name], name)
        checks.append(check)
    for name in schema.PROCESSED_SPARSE:
        codes[name], check = _ids(table[name], name)
        checks.append(check)
    for name in schema.PROCESSED_DENSE:
        dense[name], check = _dense(table[name], name)
        checks.append(check)
    checks = [c for c in checks if c is not None]
    if checks:  # an empty line fails every column: say so once, first
        checks.insert(0, _empty_lines(table))

    skipped, examples = {}, []  # kind -> count; (line, field, message)
    keep = np.ones(table.num_rows, bool)
    if lone_returns:  # a line with a lone \r is bad for that first, whatever else it has
        wrong_count = [w for w in wrong_count if w[0] not in lone_returns]
        keep &= ~np.isin(lines, list(lone_returns))
        skipped["carriage_return"] = len(lone_returns)
        examples += [(line, column, CARRIAGE_RETURN)
                     for line, column in sorted(lone_returns.items())[:EXAMPLES_KEPT]]
    for line, n_fields, text in wrong_count:
        if len(examples) < EXAMPLES_KEPT:
            examples.append((line, *_wrong_count_message(header, n_fields, text)))
    if wrong_count:
        skipped["field_count"] = len(wrong_count)
    for check in checks:
        new = check.bad & keep  # a line is counted once, under its first problem
        rows = np.flatnonzero(new)
        if len(rows):
            skipped[check.kind] = skipped.get(check.kind, 0) + len(rows)
            examples += [(int(lines[r]), check.field, check.explain(int(r)))
                         for r in rows[:EXAMPLES_KEPT]]
            keep &= ~new
    examples.sort(key=lambda e: e[0])
    if examples and not lenient:
        line, field, message = examples[0]
        raise RawFormatError(path, line, field, message)

    if not keep.all():
        lines = lines[keep]
        labels = {k: v[keep] for k, v in labels.items()}
        codes = {k: v[keep] for k, v in codes.items()}
        dense = {k: v[keep] for k, v in dense.items()}
    entry = {"lines": n_lines, "rows_written": len(lines), "skipped_lines": sum(skipped.values()),
             "skipped_by_kind": skipped, "repaired_lines": 0, "repaired_triples": 0,
             "skipped_examples": [[path.name, line, (f"field {field}: " if field else "") + text]
                                  for line, field, text in examples[:EXAMPLES_KEPT]]}
    if ignored:
        entry["ignored_columns"] = ignored
    return _raw_part(path, split, lines, labels, codes, dense), entry


def read_split_files(paths: dict[str, Path], lenient: bool = False) -> tuple[dict, dict]:
    """-> ({split: RawPart}, report): the report has the shape of the raw reader's manifest, so
    run reports and empty-split messages show what was read and skipped."""
    parts, files, examples = {}, {}, []
    for split, path in paths.items():
        parts[split], entry = read_processed_csv(path, split, lenient)
        examples += entry.pop("skipped_examples")
        files[Path(path).name] = entry
    report = {"settings": {"lenient": bool(lenient)}, "files": files,
              "skipped_lines": sum(f["skipped_lines"] for f in files.values()),
              "skipped_examples": examples[:EXAMPLES_KEPT],
              "repaired_lines": 0, "repaired_triples": 0, "repair_examples": []}
    return parts, report


def _raw_part(path: Path, split: str, lines: np.ndarray, labels: dict, codes: dict,
              dense: dict) -> RawPart:
    n = len(lines)
    line_text = pc.cast(pa.array(lines), pa.string())
    keys = pc.binary_join_element_wise(pa.scalar(f"{split}:"), line_text, "")
    one_each = np.arange(n + 1, dtype=np.int32)

    def one_element_lists(field_name: str, weights: np.ndarray):
        ids = pa.ListArray.from_arrays(one_each, pa.array(codes[field_name]))
        values = pa.ListArray.from_arrays(one_each, pa.array(weights, type=pa.float32()))
        return {field_name: ids, f"{field_name}_value": values}

    skeleton = {"line": lines, "sample_id": lines, "click": labels["click"],
                "purchase": labels["purchase"], "request_key": keys}
    for f in schema.IMPRESSION_SINGLE:
        skeleton[f] = codes[f]
    for f in schema.COMBINATION:
        skeleton[f"{f}_value"] = dense[f"D{f}"]
    for f in schema.ITEM_MULTI:
        skeleton.update(one_element_lists(f, np.ones(n, dtype=np.float32)))
    common = {"line": lines, "request_key": keys}
    for f in schema.USER_SINGLE:
        common[f] = codes[f]
    for f in schema.USER_MULTI:
        common.update(one_element_lists(f, dense[f"D{f}"]))
    return RawPart(skeleton=pa.table(skeleton), common=pa.table(common), source=path.name)
