"""Stream the raw Tianchi Ali-CCP files into the Parquet cache (stage 1: raw ids, nothing fitted).

`convert_raw` reads `sample_skeleton_{split}.csv` and `common_features_{split}.csv` block by
block with pyarrow's CSV reader (every column as bytes) and writes `skeleton_{split}.parquet` and
`common_{split}.parquet` with the columns described at the bottom of `schema.py`, then
`manifest.json` (fingerprint, counts, skipped and repaired lines, speed), last.

How a block is parsed, without a Python loop per line or per triple: the feature_list bytes of
the whole block are one numpy array; the positions of the separator bytes (\\x01 \\x02 \\x03)
give every triple's field, id and value ranges, and the separator order is checked against each
separator's predecessor. Field ids are compared as 8-byte words, feature ids are computed from
one or two 8-byte words each (digit arithmetic on uint64, no text copied), and values by
pyarrow's float cast of the block's distinct value texts only (a few hundred). The vectorised
checks only decide WHICH lines are bad; `_row_problem`, plain Python run on a bad line, says why,
so the message is the same whichever check caught it (the tests compare the two on mutated
lines). Two worker threads parse blocks while the main thread reads and writes (numpy, pyarrow
and Parquet release the GIL).

pyarrow reads the file through `_CheckedFile`, which hands it blocks ending at a line end and
swaps a line with a lone carriage return or a non-ASCII byte for a marker line before pyarrow
sees it: pyarrow would take the \\r for a line break, or stop on the non-UTF-8 text of a row
with a wrong column count. The marker comes back through pyarrow's invalid-row handler under
the line's own number, with the original line's problem. Files that are archives (gzip, zip,
tar) are refused before any reading, with a message saying to decompress them.

Memory stays flat: a few blocks are in flight and one Parquet row group is buffered; what grows
with the data is the set of request keys of the current split (~0.9M keys on the real data),
used for the join check.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bench.atomic import replace_synced, write_json
from bench.data import schema
from bench.data.fingerprint import fingerprint_files
from bench.folder_lock import CONVERTING, folder_lock

# Bump when the cache layout or the parsing rules change: old caches then read as stale.
CACHE_FORMAT = 1
BLOCK_BYTES = 8 << 20  # raw bytes per CSV block; must exceed the longest line
ROW_GROUP_BYTES = 64 << 20  # in-memory bytes of parsed blocks per Parquet row group
EXAMPLES_KEPT = 20  # skipped / repaired lines listed in the report
MAX_INT_DIGITS = 18  # every id of at most 18 digits fits int64
PAD = 64  # zero bytes after a block's text: the widest fixed-width read
WORKERS = min(2, os.cpu_count() or 1)
MANIFEST = "manifest.json"
PROGRESS_EVERY_S = 10.0


class RawFormatError(ValueError):
    """Bad raw input: which file, which 1-based line, which column, and what is wrong."""

    def __init__(self, path, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field, self.message = str(path), line, field, message
        where = os.path.basename(self.path)
        if line is not None:
            where += f" line {line}"
        if field is not None:
            where += f", field {field}"
        super().__init__(f"{where}: {message}")

    def __reduce__(self):  # picklable across processes despite the 4-argument constructor
        return (type(self), (self.path, self.line, self.field, self.message))


def show(raw: bytes, limit: int = 80) -> str:
    """Quoted text with control and non-ASCII bytes escaped, e.g. "205\\x02abc\\x031.0"."""
    text = "".join(chr(c) if 32 <= c < 127 and c not in (34, 92) else f"\\x{c:02x}"
                   for c in raw[:limit])
    return f'"{text}..."' if len(raw) > limit else f'"{text}"'


# ---------------------------------------------------------------- file layouts


@dataclass(frozen=True)
class _Layout:
    kind: str  # "skeleton" or "common"
    columns: tuple  # raw column names, in file order
    single: tuple  # single-valued fields: the first occurrence on a line is kept
    valued: tuple  # single fields whose value is kept too, as F_value
    multi: tuple  # multi-valued fields: list of ids and list of values

    @property
    def fields(self) -> tuple:
        return self.single + self.multi


SKELETON = _Layout("skeleton", ("sample_id", "click", "purchase", "common_feature_index",
                                "feature_num", "feature_list"),
                   schema.IMPRESSION_SINGLE, schema.COMBINATION, schema.ITEM_MULTI)
COMMON = _Layout("common", ("common_feature_index", "feature_num", "feature_list"),
                 schema.USER_SINGLE, (), schema.USER_MULTI)

def output_schema(layout: _Layout) -> pa.Schema:
    """The exact Parquet schema of schema.py's cache description."""
    if layout.kind == "skeleton":
        cols = [("line", pa.int64()), ("sample_id", pa.int64()), ("click", pa.int8()),
                ("purchase", pa.int8()), ("request_key", pa.string())]
    else:
        cols = [("line", pa.int64()), ("request_key", pa.string())]
    cols += [(f, pa.int64()) for f in layout.single]
    cols += [(f"{f}_value", pa.float32()) for f in layout.valued]
    for f in layout.multi:
        cols += [(f, pa.list_(pa.int64())), (f"{f}_value", pa.list_(pa.float32()))]
    return pa.schema(cols)


# ---------------------------------------------------------------- the per-line rule (Python)

_UINT = re.compile(rb"[0-9]{1,%d}" % MAX_INT_DIGITS)
_HEX16 = re.compile(rb"[0-9a-fA-F]{16}")


def _float_or_none(text: bytes) -> float | None:
    try:
        return pc.cast(pa.array([text], pa.binary()), pa.float32())[0].as_py()
    except pa.ArrowInvalid:
        return None


def _triple_problem(layout: _Layout, triple: bytes) -> str | None:
    parts = triple.split(b"\x02")
    if len(parts) != 2 or parts[1].count(b"\x03") != 1:
        return "is not of the form field\\x02feature_id\\x03value"
    field_id, rest = parts
    feature_id, value = rest.split(b"\x03")
    name = field_id.decode("latin-1")
    if name not in layout.fields:
        other = "common_features" if layout.kind == "skeleton" else "sample_skeleton"
        where = f" (a field of the {other} files)" if name in schema.ALL_FIELDS else ""
        return f"has an unknown field id {show(field_id)}{where}"
    if not _UINT.fullmatch(feature_id):
        if re.fullmatch(rb"[0-9]+", feature_id):
            return f"has a feature id longer than {MAX_INT_DIGITS} digits"
        if re.fullmatch(rb"-[0-9]+", feature_id):
            return "has a negative feature id"
        return "has a non-integer feature id"
    number = _float_or_none(value)
    if number is None:
        return "has a non-numeric value"
    if not np.isfinite(np.float32(number)):
        return "has a non-finite value (as float32)"
    return None


def _row_problem(layout: _Layout, values: list[bytes]) -> tuple[str | None, str] | None:
    """(column, message) for the first problem of one raw line, or None if it is well formed."""
    if all(v == b"" for v in values):
        return None, "empty line"
    cells = dict(zip(layout.columns, values))
    for name, value in cells.items():
        if name == "sample_id" and not _UINT.fullmatch(value):
            return name, f"{show(value)} is not a non-negative integer"
        if name in ("click", "purchase") and value not in (b"0", b"1"):
            what = "not 0 or 1" if _float_or_none(value) is not None else "not a number"
            return name, f"label {show(value)} is {what}"
        if name == "common_feature_index" and not _HEX16.fullmatch(value):
            return name, f"request key {show(value)} is not 16 hex characters"
        if name == "feature_num" and not _UINT.fullmatch(value):
            return name, f"{show(value)} is not a non-negative integer"
    feature_list = cells["feature_list"]
    triples = feature_list.split(b"\x01") if feature_list else []
    for number, triple in enumerate(triples, start=1):
        problem = _triple_problem(layout, triple)
        if problem:
            return "feature_list", f"triple {number} {show(triple)} {problem}"
    if int(cells["feature_num"]) != len(triples):
        return "feature_num", (f"feature_num is {int(cells['feature_num'])} but feature_list has "
                               f"{len(triples)} triples")
    return None


def _column_count_problem(layout: _Layout, line: bytes, n_found: int) -> tuple[str, str]:
    """(column, message) for a line that splits into n_found columns instead of the layout's."""
    n_columns = len(layout.columns)
    if n_found < n_columns:
        missing = ", ".join(layout.columns[n_found:])
        return layout.columns[n_found], (f"line has {n_found} of {n_columns} columns "
                                         f"(missing {missing}): {show(line)}")
    return layout.columns[-1], (f"line has {n_found} columns, expected {n_columns} "
                                f"(a comma inside feature_list?): {show(line)}")


def _line_problem(layout: _Layout, line: bytes) -> tuple[str | None, str]:
    """(column, message) for one whole raw line (no line end) that the reader took out before
    the CSV parser saw it: one with a carriage return or a non-ASCII byte."""
    at = line.find(b"\r")  # the line end is cut off already, so any \r here is a lone one
    if at >= 0:
        column = layout.columns[min(line.count(b",", 0, at), len(layout.columns) - 1)]
        return column, (f"carriage return (\\r) at byte {at + 1} of the line, not part of a "
                        f"\\r\\n line end: {show(line)}")
    values = line.split(b",")
    if len(values) != len(layout.columns):
        return _column_count_problem(layout, line, len(values))
    problem = _row_problem(layout, values)
    if problem is not None:
        return problem
    # Every column's rule rejects non-ASCII bytes; this only guards against a gap in them.
    at = next(i for i, byte in enumerate(line) if byte >= 0x80)
    column = layout.columns[min(line.count(b",", 0, at), len(layout.columns) - 1)]
    return column, f"non-ASCII byte 0x{line[at]:02x} in the line: {show(line)}"


# ---------------------------------------------------------------- vectorised parsing helpers


def _bytes_of(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64 (n + 1,), data uint8) of a binary array, without copying the data."""
    _, offsets_buf, data_buf = array.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=len(array) + 1,
                            offset=array.offset * 4).astype(np.int64)
    if data_buf is None:
        return offsets - offsets[0], np.zeros(0, np.uint8)
    # Only the bytes of these rows, so that positions start at 0 and nothing lies beyond.
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]:offsets[-1]]
    return offsets - offsets[0], data


def _cast_or_bad(text: pa.Array, to: pa.DataType) -> tuple[np.ndarray, np.ndarray]:
    """pyarrow cast of text to numbers, and an ok mask. The cast fails as a whole, so bad
    items are found by bisection, which costs little while they are few."""
    values = np.zeros(len(text), to.to_pandas_dtype())
    ok = np.ones(len(text), bool)
    pending = [(0, len(text))]
    while pending:
        lo, hi = pending.pop()
        try:
            values[lo:hi] = pc.cast(text.slice(lo, hi - lo), to).to_numpy()
        except pa.ArrowInvalid:
            if hi - lo == 1:
                ok[lo] = False
            else:
                mid = (lo + hi) // 2
                pending += [(lo, mid), (mid, hi)]
    return values, ok


def _first_bytes(data: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """data[starts], 0 where a start lies at the end (an empty last item)."""
    return np.append(data, np.uint8(0))[starts]


def _parse_uints(text: pa.Array, first_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative integers of 1..18 digits -> (int64 values, ok mask). pyarrow's cast also
    takes a leading '-' and 19 digits, hence the extra tests."""
    values, ok = _cast_or_bad(text, pa.int64())
    lengths = pc.binary_length(text).to_numpy()
    ok &= (lengths >= 1) & (lengths <= MAX_INT_DIGITS) & (first_bytes != ord("-"))
    return values, ok


_U8 = np.uint64
_ASCII_ZEROS = _U8(0x3030303030303030)


def _eight_digits(words: np.ndarray) -> np.ndarray:
    """Value of 8 ASCII digits held in a uint64 (first digit in the lowest byte), computed
    for all words at once by pairing digits, then pairs, then quads (SWAR)."""
    words = words - _ASCII_ZEROS
    words = words * _U8(10) + (words >> _U8(8))
    low = _U8(0x000000FF000000FF)
    return ((words & low) * _U8(100 + (1000000 << 32))
            + ((words >> _U8(16)) & low) * _U8(1 + (10000 << 32))) >> _U8(32)


def _all_digits(words: np.ndarray) -> np.ndarray:
    """True where every byte of the uint64 is an ASCII digit."""
    return ((words + _U8(0x4646464646464646)) | (words - _ASCII_ZEROS)) \
        & _U8(0x8080808080808080) == 0


def _digit_words(padded: np.ndarray, starts: np.ndarray, n_digits: np.ndarray) -> np.ndarray:
    """The n (1..8) bytes at each start, right-aligned in a uint64 behind ASCII zeros."""
    shift = (_U8(8) - n_digits.astype(np.uint64)) * _U8(8)
    return (_words_at(padded, starts, n_digits) << shift) | (_ASCII_ZEROS
                                                              & ((_U8(1) << shift) - _U8(1)))


def _parse_ids(padded: np.ndarray, starts: np.ndarray, ends: np.ndarray):
    """Feature ids padded[starts:ends] (1..18 digits) -> (int64 values, ok mask), read from
    one or two uint64 words per id instead of gathering the text (ids of 17 or 18 digits,
    never seen in the real data, take the slower text path)."""
    lengths = ends - starts
    low_length = np.clip(lengths, 1, 8)
    low = _digit_words(padded, starts + lengths - low_length, low_length)
    ok = _all_digits(low) & (lengths >= 1)
    values = _eight_digits(low)
    long = lengths > 8
    if long.any():
        high = _digit_words(padded, starts, np.clip(lengths - 8, 1, 8))
        ok &= _all_digits(high) | ~long
        values = np.where(long, _eight_digits(high) * _U8(100_000_000) + values, values)
    values = values.astype(np.int64)
    very_long = lengths > 16
    if very_long.any():
        values[very_long], ok[very_long] = _parse_uints(
            _gather_text(padded, starts[very_long], ends[very_long]), padded[starts[very_long]])
    return values, ok


def _parse_floats(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """float32 values (pyarrow's float syntax) -> (values, ok mask: parsed and finite)."""
    values, ok = _cast_or_bad(text, pa.float32())
    return values, ok & np.isfinite(values)


def _parse_values(padded: np.ndarray, starts: np.ndarray, ends: np.ndarray):
    """float32 values of the texts padded[starts:ends] -> (values, ok mask).

    The real data has a few hundred distinct value texts ("1.0", ln(count) with 6 digits...),
    so texts of up to 8 bytes are read as one uint64 word each, and only the distinct words
    are parsed (a value never contains a zero byte: that would have failed the separator
    check)."""
    lengths = ends - starts
    values = np.zeros(len(starts), np.float32)
    ok = np.zeros(len(starts), bool)
    short = lengths <= 8
    all_short = short.all()
    if all_short:  # the usual case: no masked copies
        short = slice(None)
    encoded = pc.dictionary_encode(pa.array(_words_at(padded, starts[short], lengths[short])))
    distinct = encoded.dictionary.to_numpy().astype("<u8").view(np.uint8).reshape(-1, 8)
    distinct_lengths = (distinct != 0).sum(axis=1)
    offsets = np.zeros(len(distinct) + 1, np.int32)
    np.cumsum(distinct_lengths, out=offsets[1:])
    text = pa.Array.from_buffers(pa.binary(), len(distinct), [
        None, pa.py_buffer(offsets),
        pa.py_buffer(distinct[np.arange(8) < distinct_lengths[:, None]])])
    distinct_values, distinct_ok = _parse_floats(text)
    codes = encoded.indices.to_numpy()
    values[short], ok[short] = distinct_values[codes], distinct_ok[codes]
    if not all_short:
        long = ~short
        values[long], ok[long] = _parse_floats(_gather_text(padded, starts[long], ends[long]))
    return values, ok


def _padded(data: np.ndarray) -> np.ndarray:
    """data followed by PAD zero bytes, so that fixed-width reads never run past the end."""
    out = np.zeros(len(data) + PAD, np.uint8)
    out[:len(data)] = data
    return out


def _gather_text(padded: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """The byte ranges padded[starts:ends] as one contiguous binary array."""
    lengths = ends - starts
    offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    width = int(lengths.max(initial=0))
    if width <= PAD:
        # Fixed-width rows, then keep each row's first `length` bytes: small uint8 arrays,
        # where a per-byte index (the general case below) would be 8 bytes per byte.
        rows = np.lib.stride_tricks.sliding_window_view(padded, max(width, 1))[starts]
        text = rows[np.arange(max(width, 1)) < lengths[:, None]]
    else:
        text = padded[np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])]
    return pa.Array.from_buffers(pa.binary(), len(starts),
                                 [None, pa.py_buffer(offsets.astype(np.int32)),
                                  pa.py_buffer(text)])


def _words_at(padded: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The first min(length, 8) bytes at each start as a little-endian uint64, zero-filled."""
    # A view whose element i is the 8 bytes starting at byte i (unaligned, stride 1).
    words = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
    return words[starts] & _LOW_BYTES[np.minimum(lengths, 8)]


_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], np.uint64)


def _word_of(text: bytes) -> int:
    return int.from_bytes(text.ljust(8, b"\0"), "little")


def _field_words(layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """A file's field ids as sorted uint64 words, and each word's index in layout.fields."""
    words = np.array([_word_of(f.encode()) for f in layout.fields], np.uint64)
    order = np.argsort(words)
    return words[order], order.astype(np.int16)


_FIELD_WORDS = {"skeleton": _field_words(SKELETON), "common": _field_words(COMMON)}


def _field_indexes(layout: _Layout, padded: np.ndarray, starts, ends) -> np.ndarray:
    """Index into layout.fields of each field id padded[starts:ends]; -1 when unknown."""
    lengths = ends - starts
    words = _words_at(padded, starts, lengths)
    known, index = _FIELD_WORDS[layout.kind]
    at = np.minimum(np.searchsorted(known, words), len(known) - 1)
    return np.where((known[at] == words) & (lengths <= 8), index[at], -1)


# The separator that must follow each separator on a line: \x02 -> \x03 -> \x01 -> \x02.
_NEXT_SEPARATOR = np.array([255, 2, 3, 1], dtype=np.uint8)


@dataclass
class _Triples:
    row: np.ndarray  # row of the block of each triple
    field: np.ndarray  # index into layout.fields
    feature_id: np.ndarray  # int64
    value: np.ndarray  # float32
    count: np.ndarray  # triples per row


def _parse_feature_lists(layout: _Layout, column: pa.Array) -> tuple[_Triples | None, np.ndarray]:
    """Split every feature_list of a block into triples -> (triples or None, bad-row mask)."""
    n_rows = len(column)
    line_offsets, data = _bytes_of(column)
    positions = np.flatnonzero(data < 4)  # \x01 \x02 \x03 (and \x00, which is never valid)
    kinds = data[positions]
    first = np.searchsorted(positions, line_offsets)  # first separator at/after each line start
    n_separators = np.diff(first)
    lengths = np.diff(line_offsets)
    # A list of k triples has 3k - 1 separators in the order 2 3 1 2 3 1 ... 2 3: each line's
    # first separator is \x02, each later one follows its predecessor, the last one is \x03.
    bad = (lengths > 0) & (n_separators % 3 != 2)
    expected = np.empty_like(kinds)
    expected[1:] = _NEXT_SEPARATOR[kinds[:-1]]
    expected[first[:-1][n_separators > 0]] = 2
    wrong = np.flatnonzero(kinds != expected)
    if len(wrong):
        bad[np.searchsorted(line_offsets, positions[wrong], side="right") - 1] = True
    if bad.any():
        return None, bad

    count = np.where(lengths > 0, (n_separators + 1) // 3, 0)
    after_field = positions[kinds == 2]
    after_id = positions[kinds == 3]
    between = positions[kinds == 1]
    n_triples = len(after_field)
    row = np.repeat(np.arange(n_rows, dtype=np.int32), count)
    first_triple = np.zeros(n_rows + 1, np.int64)
    np.cumsum(count, out=first_triple[1:])
    has = count > 0
    # Each triple starts after a \x01 or at its line's start, and ends at one or at line end.
    is_first = np.zeros(n_triples, bool)
    is_first[first_triple[:-1][has]] = True
    is_last = np.zeros(n_triples, bool)
    is_last[first_triple[1:][has] - 1] = True
    field_start = np.empty(n_triples, np.int64)
    field_start[is_first] = line_offsets[:-1][has]
    field_start[~is_first] = between + 1
    value_end = np.empty(n_triples, np.int64)
    value_end[is_last] = line_offsets[1:][has]
    value_end[~is_last] = between

    padded = _padded(data)
    field_index = _field_indexes(layout, padded, field_start, after_field)
    feature_id, id_ok = _parse_ids(padded, after_field + 1, after_id)
    value, value_ok = _parse_values(padded, after_id + 1, value_end)
    triple_bad = (field_index < 0) | ~id_ok | ~value_ok
    if triple_bad.any():
        bad[row[triple_bad]] = True
        return None, bad
    return _Triples(row, field_index.astype(np.int8), feature_id, value, count), bad


def _single_column(rows: np.ndarray, values: np.ndarray, n_rows: int, dtype) -> pa.Array:
    out = np.zeros(n_rows, dtype=dtype)
    present = np.zeros(n_rows, bool)
    out[rows] = values
    present[rows] = True
    return pa.array(out, mask=~present)


def _list_column(rows: np.ndarray, values: np.ndarray, n_rows: int, offsets=None):
    if offsets is None:
        offsets = np.zeros(n_rows + 1, np.int32)
        np.cumsum(np.bincount(rows, minlength=n_rows), out=offsets[1:])
    item = pa.int64() if values.dtype == np.int64 else pa.float32()
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), type=pa.list_(item)), \
        offsets


_HEX_DIGIT = np.zeros(256, bool)
_HEX_DIGIT[list(b"0123456789abcdefABCDEF")] = True


def _check_columns(layout: _Layout, batch: pa.RecordBatch):
    """Vectorised checks of the columns other than feature_list -> (bad mask, parsed)."""
    bad = np.zeros(batch.num_rows, bool)
    parsed = {}
    for name, column in zip(layout.columns, batch.columns):
        if name == "feature_list":
            continue
        offsets, data = _bytes_of(column)
        lengths = np.diff(offsets)
        if name in ("sample_id", "feature_num"):
            parsed[name], ok = _parse_uints(column, _first_bytes(data, offsets[:-1]))
        elif name in ("click", "purchase"):
            byte = _first_bytes(data, offsets[:-1])
            ok = (lengths == 1) & ((byte == ord("0")) | (byte == ord("1")))
            parsed[name] = (byte - ord("0")).astype(np.int8)
        else:  # the request key: 16 hex characters
            ok = lengths == 16
            if ok.all() and not _HEX_DIGIT[data].all():
                ok &= _HEX_DIGIT[data].reshape(-1, 16).all(axis=1)
            elif not ok.all():
                non_hex = np.flatnonzero(~_HEX_DIGIT[data])
                ok[np.searchsorted(offsets, non_hex, side="right") - 1] = False
        bad |= ~ok
    return bad, parsed


# ---------------------------------------------------------------- one block


@dataclass
class _Block:
    """What a worker hands back for one CSV block (rows that passed, in file order)."""

    table: pa.Table | None = None
    bad_lines: list = field(default_factory=list)  # (line, column, message, kind); kind:
    # "format", "missing_common" or "duplicate_key"; in strict mode only the first one
    n_bad: dict = field(default_factory=dict)  # kind -> count
    repaired_lines: int = 0
    repaired_triples: int = 0
    repair_examples: list = field(default_factory=list)  # (line, message)
    keys: list | None = None  # common: every key in order; skeleton: one key per run
    key_lines: np.ndarray | None = None  # common: the line of each key


@dataclass
class _Context:
    path: Path
    layout: _Layout
    lenient: bool
    known_keys: dict | None = None  # skeleton: request key -> line in the common file


def _parse_block(ctx: _Context, batch: pa.RecordBatch, lines: np.ndarray):
    """-> (bad mask, None, None) or (None, table, repairs) when every row is well formed."""
    layout = ctx.layout
    bad, parsed = _check_columns(layout, batch)
    if bad.any():
        return bad, None, None
    triples, bad = _parse_feature_lists(layout, batch.column("feature_list"))
    if triples is None:
        return bad, None, None
    bad = triples.count != parsed["feature_num"]
    if bad.any():
        return bad, None, None

    n_rows = batch.num_rows
    columns = {"line": pa.array(lines, pa.int64())}
    if layout.kind == "skeleton":
        columns["sample_id"] = pa.array(parsed["sample_id"])
        columns["click"] = pa.array(parsed["click"])
        columns["purchase"] = pa.array(parsed["purchase"])
    columns["request_key"] = batch.column("common_feature_index").cast(pa.string())

    # Group the triples by field (stable, so rows stay ascending within a field).
    order = np.argsort(triples.field, kind="stable")
    bounds = np.zeros(len(layout.fields) + 1, np.int64)
    np.cumsum(np.bincount(triples.field, minlength=len(layout.fields)), out=bounds[1:])
    rows_sorted = triples.row[order]
    ids_sorted = triples.feature_id[order]
    values_sorted = triples.value[order]
    repaired = np.zeros(n_rows, bool)
    repairs = []  # (row, message) for the first few
    n_repeated = 0
    for index, name in enumerate(layout.fields):
        part = slice(bounds[index], bounds[index + 1])
        rows = rows_sorted[part]
        if name in layout.multi:
            columns[name], offsets = _list_column(rows, ids_sorted[part], n_rows)
            columns[f"{name}_value"], _ = _list_column(rows, values_sorted[part], n_rows, offsets)
            continue
        # A single field that repeats on a line: keep the first (a known property of the data).
        first = np.ones(len(rows), bool)
        first[1:] = rows[1:] != rows[:-1]
        if not first.all():
            extra_rows = rows[~first]
            n_repeated += len(extra_rows)
            repaired[extra_rows] = True
            for row in np.unique(extra_rows)[:EXAMPLES_KEPT]:
                times = int((rows == row).sum())
                repairs.append((int(row), f"field {name} appears {times} times; kept the first"))
        kept = rows[first]
        columns[name] = _single_column(kept, ids_sorted[part][first], n_rows, np.int64)
        if name in layout.valued:
            columns[f"{name}_value"] = _single_column(kept, values_sorted[part][first], n_rows,
                                                      np.float32)
    table = pa.Table.from_pydict(columns, schema=output_schema(layout))
    repairs.sort()
    return None, table, (int(repaired.sum()), n_repeated, repairs[:EXAMPLES_KEPT])


def _row_values(batch: pa.RecordBatch, row: int) -> list[bytes]:
    return [column[row].as_py() for column in batch.columns]


def _explain(ctx: _Context, batch, row: int, line: int) -> tuple:
    problem = _row_problem(ctx.layout, _row_values(batch, row))
    if problem is None:  # the vectorised checks and the per-line rule disagree: a bug here
        raise AssertionError(f"{ctx.path.name} line {line}: flagged as bad, but no problem "
                             f"found in {_row_values(batch, row)!r}")
    return (line, problem[0], problem[1], "format")


def _missing_keys(ctx: _Context, batch: pa.RecordBatch) -> tuple[np.ndarray, list]:
    """Skeleton join check -> (mask of rows whose key has no common line, one key per run)."""
    keys = batch.column("common_feature_index")
    n_rows = len(keys)
    if n_rows == 0:
        return np.zeros(0, bool), []
    # Keys come in contiguous runs (~58 impressions per key): look up each run once.
    offsets, data = _bytes_of(keys)
    words = data.view(np.uint64).reshape(n_rows, 2)  # every key is 16 bytes by now
    starts = np.flatnonzero(np.r_[True, (words[1:] != words[:-1]).any(axis=1)])
    run_keys = keys.take(pa.array(starts)).to_pylist()
    known = ctx.known_keys
    missing_runs = np.fromiter((k not in known for k in run_keys), bool, len(run_keys))
    missing = np.repeat(missing_runs, np.diff(np.r_[starts, n_rows]))
    return missing, run_keys


def _process_block(ctx: _Context, batch: pa.RecordBatch, lines: np.ndarray) -> _Block:
    """Parse one block; bad rows are taken out (all of them, or in strict mode up to the first)
    and the rest parsed again, until what remains is clean."""
    result = _Block()
    first_bad_line = None
    while True:
        bad, table, repairs = _parse_block(ctx, batch, lines)
        missing = None
        if bad is None and ctx.layout.kind == "skeleton":
            missing, run_keys = _missing_keys(ctx, batch)
            if missing.any():
                bad = missing
        if bad is None:
            break
        bad_rows = np.flatnonzero(bad)
        if not ctx.lenient:
            # Keep only the rows before the first bad one: an earlier bad row of another kind
            # may still be hiding there.
            row = int(bad_rows[0])
            if missing is not None:
                key = batch.column("common_feature_index")[row].as_py()
                first_bad_line = (int(lines[row]), "common_feature_index",
                                  f"request key {show(key)} has no line in "
                                  f"{_common_of(ctx.path).name}", "missing_common")
            else:
                first_bad_line = _explain(ctx, batch, row, int(lines[row]))
            batch, lines = batch.slice(0, row), lines[:row]
            continue
        kind = "missing_common" if missing is not None else "format"
        result.n_bad[kind] = result.n_bad.get(kind, 0) + len(bad_rows)
        for row in bad_rows[:EXAMPLES_KEPT]:
            if missing is not None:
                key = batch.column("common_feature_index")[int(row)].as_py()
                result.bad_lines.append((int(lines[row]), "common_feature_index",
                                         f"request key {show(key)} has no line in "
                                         f"{_common_of(ctx.path).name}", kind))
            else:
                result.bad_lines.append(_explain(ctx, batch, int(row), int(lines[row])))
        keep = ~bad
        batch, lines = batch.filter(pa.array(keep)), lines[keep]
    if first_bad_line is not None:
        result.bad_lines = [first_bad_line]
        return result
    result.bad_lines.sort()
    result.table = table
    result.repaired_lines, result.repaired_triples, examples = repairs
    result.repair_examples = [(int(lines[row]), message) for row, message in examples]
    if ctx.layout.kind == "skeleton":
        result.keys = run_keys
    else:
        result.keys = batch.column("common_feature_index").to_pylist()
        result.key_lines = lines
    return result


def _common_of(skeleton_path: Path) -> Path:
    split = skeleton_path.name[len("sample_skeleton_"):-len(".csv")]
    return skeleton_path.with_name(schema.common_name(split))


# ---------------------------------------------------------------- one file


class _LineNumbers:
    """1-based line numbers of the rows pyarrow returns, given the lines it skipped as
    invalid (wrong column count); those are reported by its invalid-row handler."""

    def __init__(self):
        self.next_line = 1
        self.skipped = []  # line numbers of skipped rows not yet passed, ascending

    def take(self, n_rows: int) -> np.ndarray:
        skipped = np.array(self.skipped, dtype=np.int64)
        candidates = np.arange(self.next_line, self.next_line + n_rows + len(skipped))
        lines = candidates[~np.isin(candidates, skipped)][:n_rows]
        if n_rows:
            self.next_line = int(lines[-1]) + 1
        self.skipped = [s for s in self.skipped if s >= self.next_line]
        while self.skipped and self.skipped[0] == self.next_line:  # skipped lines that follow
            self.next_line += 1
            self.skipped.pop(0)
        return lines


@dataclass
class _FileStats:
    bytes: int = 0
    lines: int = 0
    rows_written: int = 0
    skipped: dict = field(default_factory=dict)  # kind -> count
    repaired_lines: int = 0
    repaired_triples: int = 0
    seconds: float = 0.0
    clicks: int = 0
    purchases: int = 0
    click_and_purchase: int = 0
    purchase_without_click: int = 0
    distinct_keys: int = 0


@dataclass
class _Report:
    skipped_examples: list = field(default_factory=list)  # [file, line, reason]
    repair_examples: list = field(default_factory=list)


_SUSPECT = re.compile(rb"[\x80-\xff]|\r(?!\n)")  # a non-ASCII byte, or a CR not before LF
_BOM = b"\xef\xbb\xbf"


class _CheckedFile:
    """The raw file as pyarrow reads it: the same bytes in blocks that end at a line end,
    except that a line pyarrow would misread is swapped for a marker line, unique to this
    file, that names it. pyarrow takes a lone \\r for a line break (which would shift every
    later line number), and it decodes the text of a row with a wrong column count as UTF-8
    before its invalid-row handler runs (a non-UTF-8 byte there ends the whole read). A marker
    has one column, so the handler receives it; `pop_problem` then gives the original line's
    problem, found by the per-line rule. The check of a clean block is two C scans
    (isascii, find \\r), and no block is copied; a block's partial last line is read again
    with the next block."""

    closed = False

    def __init__(self, path: Path, layout: _Layout):
        self.fd = os.open(path, os.O_RDONLY)
        self.layout = layout
        self.position = 0
        self.marker = b"#bad-line-" + os.urandom(8).hex().encode() + b"-"
        self.problems = {}  # marker number -> (column, message) of the line it stands for
        self.n_markers = 0

    def read(self, n: int = -1):
        if n is None or n < 0:
            n = max(os.fstat(self.fd).st_size - self.position, 0)
        # One system call per block (pread: no seek, so the GIL is given up and taken once).
        chunk = os.pread(self.fd, n, self.position)
        at_end = len(chunk) < n
        cut = len(chunk) if at_end else chunk.rfind(b"\n") + 1
        if cut == 0:  # no line end: a line longer than the block, which pyarrow reports
            self.position += len(chunk)
            # ...unless a \r splits it (a file with \r line ends): keep it one line.
            return chunk.replace(b"\r", b"\0") if b"\r" in chunk else chunk
        # pyarrow drops a UTF-8 byte order mark at the start of the file: so does the check.
        first = len(_BOM) if self.position == 0 and chunk.startswith(_BOM) else 0
        self.position += cut
        if (chunk.isascii() or (first and chunk[first:].isascii())) and (
                b"\r" not in chunk or chunk.count(b"\r") == chunk.count(b"\r\n")):
            return chunk if cut == len(chunk) else memoryview(chunk)[:cut]
        return self._swap_bad_lines(chunk[:cut], first, at_end)

    def _swap_bad_lines(self, data: bytes, first: int, at_end: bool) -> bytes:
        """data with each line from `first` on that holds a suspect byte swapped for a marker."""
        pieces, done = [], 0
        for suspect in _SUSPECT.finditer(data, first):
            at = suspect.start()
            if at < done or (at_end and at == len(data) - 1 and data[at] == 13):
                continue  # a line already swapped, or a last line that ends with a lone \r
            start = max(data.rfind(b"\n", 0, at) + 1, first)
            end = data.find(b"\n", at)
            if end < 0:  # the file's last line, without a line end
                end = len(data) - (data[-1] == 13)
            elif data[end - 1] == 13:
                end -= 1  # keep a \r\n line end as it is
            self.n_markers += 1
            if self.n_markers <= 2 * EXAMPLES_KEPT:  # beyond these, only the count is used
                self.problems[self.n_markers] = _line_problem(self.layout, data[start:end])
            pieces += [data[done:start], self.marker, str(self.n_markers).encode()]
            done = end
        pieces.append(data[done:])
        return b"".join(pieces)

    def pop_problem(self, text: str) -> tuple[str | None, str] | None:
        """The problem of the line a marker row stands for; None for any other row."""
        if not text.startswith(self.marker.decode()):
            return None
        number = int(text[len(self.marker):])
        return self.problems.pop(number, (None, "bad line (no detail kept)"))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.position

    def close(self):
        if not self.closed:
            os.close(self.fd)
        self.closed = True


def _open_reader(source: _CheckedFile, layout: _Layout, block_bytes: int, on_invalid):
    return pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(column_names=list(layout.columns), block_size=block_bytes,
                                       use_threads=False),  # serial: the handler knows lines
        parse_options=pacsv.ParseOptions(delimiter=",", quote_char=False, double_quote=False,
                                         escape_char=False, newlines_in_values=False,
                                         ignore_empty_lines=False,
                                         invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.binary() for c in layout.columns},
                                             strings_can_be_null=False, check_utf8=False))


def _convert_file(ctx: _Context, out_path: Path, stats: _FileStats, report: _Report,
                  block_bytes: int, workers: int, progress: bool) -> dict | None:
    """Convert one raw file into one Parquet file; for a common file return key -> line."""
    layout, path = ctx.layout, ctx.path
    numbers = _LineNumbers()
    invalid = deque()  # (line, column, message, kind) of the rows pyarrow did not parse
    n_columns = len(layout.columns)
    n_invalid = 0
    source = _CheckedFile(path, layout)

    def on_invalid(row):
        """A row with a wrong column count, or a marker for a line with a bad character."""
        nonlocal n_invalid
        n_invalid += 1
        problem = source.pop_problem(row.text)
        if problem is None:
            # Explain the first few only: a wholly broken file must not fill memory.
            problem = _column_count_problem(layout, row.text.encode(), row.actual_columns) \
                if n_invalid <= 2 * EXAMPLES_KEPT else (None, "")
        invalid.append((row.number, *problem, "format"))
        numbers.skipped.append(row.number)
        return "skip"

    def handle_invalid(before_line):
        """Report the unparsed rows before a line; strict mode raises the first."""
        while invalid and invalid[0][0] < before_line:
            _bad_line(ctx, invalid.popleft(), stats, report, 1)

    keys = {} if layout.kind == "common" else None
    skeleton_keys = set() if layout.kind == "skeleton" else None
    started = last_print = time.perf_counter()
    done_bytes = 0

    def finish_one():
        """Take the oldest block's result: report its bad lines in order, write its rows."""
        block, lines, covered = pending.popleft()
        result = block.result()
        table = result.table
        bad_lines = [(item, 0) for item in result.bad_lines]  # 0: counted in result.n_bad
        if table is not None and keys is not None:
            table, repeated = _register_keys(keys, result, table)
            bad_lines = sorted(bad_lines + [(item, 1) for item in repeated],
                               key=lambda pair: pair[0][0])
        for item, counted in bad_lines:  # merged with the unparsed rows, in line order
            handle_invalid(item[0])
            _bad_line(ctx, item, stats, report, counted)
        for kind, count in result.n_bad.items():
            stats.skipped[kind] = stats.skipped.get(kind, 0) + count
        handle_invalid(covered + 1)
        if table is None:
            return
        if keys is None:
            skeleton_keys.update(result.keys)
            clicks = table.column("click").to_numpy()
            purchases = table.column("purchase").to_numpy()
            stats.clicks += int(clicks.sum())
            stats.purchases += int(purchases.sum())
            stats.click_and_purchase += int((clicks & purchases).sum())
            stats.purchase_without_click += int((purchases & (1 - clicks)).sum())
        if table.num_rows:
            row_group.append(table)
        if sum(t.nbytes for t in row_group) >= ROW_GROUP_BYTES:
            flush_row_group()
        stats.rows_written += table.num_rows
        stats.repaired_lines += result.repaired_lines
        stats.repaired_triples += result.repaired_triples
        for line, message in result.repair_examples:
            if len(report.repair_examples) < EXAMPLES_KEPT:
                report.repair_examples.append([path.name, line, message])

    row_group = []  # parsed blocks waiting to be written as one Parquet row group

    def flush_row_group():
        if row_group:
            writer.write_table(pa.concat_tables(row_group))
            row_group.clear()

    pending = deque()  # (future, lines, last line covered by the block), oldest first
    writer = pq.ParquetWriter(out_path, output_schema(layout), compression="zstd",
                              compression_level=1)
    def unreadable(error) -> RawFormatError:
        return RawFormatError(path, numbers.next_line, None,
                              f"unreadable from this line on (a line longer than the read block "
                              f"of {block_bytes:,} bytes?): {error}")

    try:
        try:
            reader = _open_reader(source, layout, block_bytes, on_invalid)
        except pa.ArrowInvalid as error:  # the first block is read here
            raise unreadable(error) from None
        with ThreadPoolExecutor(max_workers=workers) as pool:
            read_error = None
            try:
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        break
                    except pa.ArrowInvalid as error:  # raised after the blocks before it
                        read_error = unreadable(error)
                        break
                    lines = numbers.take(batch.num_rows)
                    done_bytes += sum(c.buffers()[2].size for c in batch.columns
                                      if c.buffers()[2] is not None) + batch.num_rows * n_columns
                    pending.append((pool.submit(_process_block, ctx, batch, lines), lines,
                                    numbers.next_line - 1))
                    if invalid and not ctx.lenient and numbers.next_line > invalid[0][0]:
                        break  # strict: no need to read past a column-count error
                    while len(pending) > workers:
                        finish_one()
                    if progress and time.perf_counter() - last_print > PROGRESS_EVERY_S:
                        last_print = time.perf_counter()
                        rate = done_bytes / 1e6 / (last_print - started)
                        print(f"  {path.name}: {done_bytes / 1e6:,.0f} of {stats.bytes / 1e6:,.0f}"
                              f" MB, {rate:.0f} MB/s", file=sys.stderr, flush=True)
                while pending:
                    finish_one()
                if read_error is not None:
                    raise read_error
                flush_row_group()
            finally:
                for block, _, _ in pending:
                    block.cancel()
        numbers.take(0)
        handle_invalid(float("inf"))
    finally:
        writer.close()
        source.close()
    stats.lines = numbers.next_line - 1
    stats.seconds = time.perf_counter() - started
    if skeleton_keys is not None:
        stats.distinct_keys = len(skeleton_keys)
    return keys


def _bad_line(ctx: _Context, item: tuple, stats: _FileStats, report: _Report, counted: int):
    """Strict mode: raise. Lenient: count (unless counted already) and keep a few examples."""
    line, column, message, kind = item
    if not ctx.lenient:
        raise RawFormatError(ctx.path, line, column, message)
    if counted:
        stats.skipped[kind] = stats.skipped.get(kind, 0) + counted
    if len(report.skipped_examples) < EXAMPLES_KEPT:
        where = f"field {column}: " if column else ""
        report.skipped_examples.append([ctx.path.name, line, where + message])


def _register_keys(keys: dict, result: _Block, table: pa.Table) -> tuple[pa.Table, list]:
    """Common file: remember each request key's line -> (table without the lines whose key was
    seen before, those lines as bad-line items)."""
    block_keys, block_lines = result.keys, result.key_lines.tolist()
    if keys.keys().isdisjoint(block_keys) and len(set(block_keys)) == len(block_keys):
        keys.update(zip(block_keys, block_lines))
        return table, []
    # Some key repeats: find which, in file order (rare, so a plain loop).
    duplicate = np.zeros(len(block_keys), bool)
    repeated = []
    for row, (key, line) in enumerate(zip(block_keys, block_lines)):
        first_line = keys.setdefault(key, line)
        if first_line != line:
            duplicate[row] = True
            repeated.append((line, "common_feature_index",
                             f"request key {show(key)} repeats line {first_line}",
                             "duplicate_key"))
    return table.filter(pa.array(~duplicate)), repeated


# ---------------------------------------------------------------- the whole conversion


def raw_settings(settings: dict | None = None, **overrides) -> dict:
    """Normalised preparation settings (what the fingerprint covers)."""
    merged = {"splits": list(schema.RAW_SPLITS), "lenient": False, **(settings or {}),
              **overrides}
    merged["splits"] = list(merged["splits"])
    merged["lenient"] = bool(merged["lenient"])
    merged["reader_format"] = CACHE_FORMAT
    return merged


def raw_paths(data_dir: Path, splits) -> list[Path]:
    data_dir = Path(data_dir)
    return [data_dir / name for split in splits
            for name in (schema.common_name(split), schema.skeleton_name(split))]


def output_names(split: str) -> tuple[str, str]:
    return f"common_{split}.parquet", f"skeleton_{split}.parquet"


def cache_is_current(data_dir, cache_dir, settings: dict | None = None) -> bool:
    """True when cache_dir holds a complete conversion of these files with these settings."""
    cache_dir = Path(cache_dir)
    settings = raw_settings(settings)
    try:
        manifest = json.loads((cache_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    paths = raw_paths(data_dir, settings["splits"])
    if not all(p.is_file() for p in paths):
        return False
    outputs = [cache_dir / n for s in settings["splits"] for n in output_names(s)]
    if not all(p.is_file() for p in outputs):
        return False
    return manifest.get("fingerprint") == fingerprint_files(paths, settings)


@contextmanager
def _reuse_freed_memory():
    """Keep freed memory in the process while converting. Every block allocates the same
    large temporary arrays; glibc would hand them back to the OS at each free and fault fresh
    pages in at the next block, which cost a third of the parse time (measured). Afterwards the
    thresholds are set to the values glibc's own dynamic rule reaches once large arrays have
    been freed (mmap 32 MiB, trim twice that), and the kept memory is released."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to tune
        yield
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_trim_threshold, 1 << 30)
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's upper limit for this setting
    try:
        yield
    finally:
        mallopt(m_trim_threshold, 64 << 20)
        malloc_trim(0)


# Archives saved under the .csv name: (offset, magic bytes, what the file is). Tianchi ships
# the data as sample_{train,test}.tar.gz. Such a file is refused rather than unpacked here:
# its size and fingerprint would be those of the archive, inflating it would take one of the
# two parsing cores, and a .tar.gz unpacks to a tar stream, not to the CSV text.
_ARCHIVES = ((0, b"\x1f\x8b", "gzip-compressed"), (0, b"PK\x03\x04", "a zip archive"),
             (257, b"ustar", "a tar archive"))


def _check_inputs(paths: list[Path]):
    for path in paths:
        if not path.is_file():
            raise RawFormatError(path, None, None, f"file not found (looked in {path.parent})")
        if path.stat().st_size == 0:
            raise RawFormatError(path, None, None, "file is empty")
        with open(path, "rb") as file:
            head = file.read(512)
        for offset, magic, what in _ARCHIVES:
            if head[offset:offset + len(magic)] == magic:
                raise RawFormatError(path, None, None, (
                    f"file is {what} (its bytes at offset {offset} are "
                    f"{magic.hex(' ')}), not CSV text: decompress it first (Tianchi's "
                    f"sample_train.tar.gz and sample_test.tar.gz unpack with tar -xzf)"))


def convert_raw(data_dir, cache_dir, *, progress: bool = True, **options) -> dict:
    """Convert the raw files of `splits` into the Parquet cache; return the report (manifest).

    Strict mode (the default) raises RawFormatError at the first bad line; lenient mode skips
    bad lines and counts and lists them in the report. Single fields repeated on a line are
    always repaired (first kept) and counted. Holds the cache folder's lock meanwhile
    (bench.folder_lock), so two processes never convert into one folder at once.
    """
    with folder_lock(cache_dir, progress):
        return _convert_locked(data_dir, cache_dir, progress=progress, **options)


def _convert_locked(data_dir, cache_dir, *, splits=schema.RAW_SPLITS, lenient: bool = False,
                    progress: bool = True, block_bytes: int = BLOCK_BYTES,
                    workers: int = WORKERS) -> dict:
    started = time.perf_counter()
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    settings = raw_settings(splits=splits, lenient=lenient)
    paths = raw_paths(data_dir, settings["splits"])
    _check_inputs(paths)
    fingerprint = fingerprint_files(paths, settings)
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / MANIFEST).unlink(missing_ok=True)  # from here on the cache reads as incomplete
    work_dir = Path(tempfile.mkdtemp(prefix=CONVERTING, dir=cache_dir))
    report = _Report()
    files, split_stats = {}, {}
    try:
        with _reuse_freed_memory():
            for split in settings["splits"]:
                _convert_split(data_dir, work_dir, split, lenient, report, files, split_stats,
                               block_bytes, workers, progress)
        for split in settings["splits"]:  # the manifest, written last, makes them current
            for out_name in output_names(split):
                replace_synced(work_dir / out_name, cache_dir / out_name)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    seconds = time.perf_counter() - started
    total_bytes = sum(f["bytes"] for f in files.values())
    manifest = {
        "cache_format": CACHE_FORMAT,
        "fingerprint": fingerprint,
        "settings": settings,
        "data_dir": str(data_dir),
        "files": files,
        "splits": split_stats,
        "skipped_lines": sum(f["skipped_lines"] for f in files.values()),
        "skipped_examples": report.skipped_examples,
        "repaired_lines": sum(f["repaired_lines"] for f in files.values()),
        "repaired_triples": sum(f["repaired_triples"] for f in files.values()),
        "repair_examples": report.repair_examples,
        "seconds": round(seconds, 3),
        "raw_mb": round(total_bytes / 1e6, 3),
        "mb_per_s": round(total_bytes / 1e6 / max(seconds, 1e-9), 2),
        "workers": workers,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pyarrow": pa.__version__,
    }
    write_json(cache_dir / MANIFEST, manifest, indent=1, sort_keys=True)
    if progress:
        print(f"converted {total_bytes / 1e6:,.0f} MB in {seconds:.1f} s "
              f"({manifest['mb_per_s']:.0f} MB/s); skipped {manifest['skipped_lines']} lines, "
              f"repaired {manifest['repaired_lines']}", file=sys.stderr, flush=True)
    return manifest


def _convert_split(data_dir: Path, work_dir: Path, split: str, lenient: bool, report: _Report,
                   files: dict, split_stats: dict, block_bytes: int, workers: int,
                   progress: bool):
    """The common file first (its keys are the join check of the skeleton), then the skeleton."""
    known_keys, requests = None, 0
    for layout, name, out_name in zip((COMMON, SKELETON),
                                      (schema.common_name(split), schema.skeleton_name(split)),
                                      output_names(split)):
        path = data_dir / name
        stats = _FileStats(bytes=path.stat().st_size)
        if progress:
            print(f"converting {path} ...", file=sys.stderr, flush=True)
        ctx = _Context(path, layout, lenient, known_keys)
        keys = _convert_file(ctx, work_dir / out_name, stats, report, block_bytes, workers,
                             progress)
        if layout.kind == "common":  # its keys, even none (every line skipped as bad)
            known_keys = keys
        files[name] = _file_entry(stats, out_name)
        if layout.kind == "common":
            requests = stats.rows_written
        else:
            split_stats[split] = _split_entry(stats, requests)


def _file_entry(stats: _FileStats, out_name: str) -> dict:
    return {"bytes": stats.bytes, "lines": stats.lines, "rows_written": stats.rows_written,
            "skipped_lines": sum(stats.skipped.values()), "skipped_by_kind": stats.skipped,
            "repaired_lines": stats.repaired_lines, "repaired_triples": stats.repaired_triples,
            "seconds": round(stats.seconds, 3),
            "mb_per_s": round(stats.bytes / 1e6 / max(stats.seconds, 1e-9), 2),
            "output": out_name}


def _split_entry(stats: _FileStats, requests: int) -> dict:
    return {"impressions": stats.rows_written, "requests": requests,
            "requests_with_impressions": stats.distinct_keys, "clicks": stats.clicks,
            "purchases": stats.purchases, "click_and_purchase": stats.click_and_purchase,
            "purchase_without_click": stats.purchase_without_click,
            "skipped_missing_common": stats.skipped.get("missing_common", 0)}
