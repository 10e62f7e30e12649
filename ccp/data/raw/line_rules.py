"""The per-line rule, in plain Python: what is wrong with one raw line, as (column, message).

The vectorised block checks (blocks.py) only decide WHICH lines are bad; these functions, run on
a bad line only, say why, so a message is the same whichever check caught the line (the tests
compare the two on mutated lines)."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ccp.data import schema
from ccp.data.raw.layout import MAX_INT_DIGITS, Layout, show

_UINT = re.compile(rb"[0-9]{1,%d}" % MAX_INT_DIGITS)
_HEX16 = re.compile(rb"[0-9a-fA-F]{16}")


def _float_or_none(text: bytes) -> float | None:
    try:
        return pc.cast(pa.array([text], pa.binary()), pa.float32())[0].as_py()
    except pa.ArrowInvalid:
        return None


def _triple_problem(layout: Layout, triple: bytes) -> str | None:
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


def row_problem(layout: Layout, values: list[bytes]) -> tuple[str | None, str] | None:
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


def column_count_problem(layout: Layout, line: bytes, n_found: int) -> tuple[str, str]:
    """(column, message) for a line that splits into n_found columns instead of the layout's."""
    n_columns = len(layout.columns)
    if n_found < n_columns:
        missing = ", ".join(layout.columns[n_found:])
        return layout.columns[n_found], (f"line has {n_found} of {n_columns} columns "
                                         f"(missing {missing}): {show(line)}")
    return layout.columns[-1], (f"line has {n_found} columns, expected {n_columns} "
                                f"(a comma inside feature_list?): {show(line)}")


def line_problem(layout: Layout, line: bytes) -> tuple[str | None, str]:
    """(column, message) for one whole raw line (no line end) that the reader took out before
    the CSV parser saw it: one with a carriage return or a non-ASCII byte."""
    at = line.find(b"\r")  # the line end is cut off already, so any \r here is a lone one
    if at >= 0:
        column = layout.columns[min(line.count(b",", 0, at), len(layout.columns) - 1)]
        return column, (f"carriage return (\\r) at byte {at + 1} of the line, not part of a "
                        f"\\r\\n line end: {show(line)}")
    values = line.split(b",")
    if len(values) != len(layout.columns):
        return column_count_problem(layout, line, len(values))
    problem = row_problem(layout, values)
    if problem is not None:
        return problem
    # Every column's rule rejects non-ASCII bytes; this only guards against a gap in them.
    at = next(i for i, byte in enumerate(line) if byte >= 0x80)
    column = layout.columns[min(line.count(b",", 0, at), len(layout.columns) - 1)]
    return column, f"non-ASCII byte 0x{line[at]:02x} in the line: {show(line)}"
