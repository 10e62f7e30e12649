"""One CSV block of a raw file -> a Parquet table of its good rows, and its bad lines.

How a block is parsed, without a Python loop per line or per triple: the feature_list bytes of
the whole block are one numpy array; the positions of the separator bytes (\\x01 \\x02 \\x03)
give every triple's field, id and value ranges, and the separator order is checked against each
separator's predecessor; the numbers are read by kernels.py. Bad rows are found vectorised and
explained by the per-line rule (line_rules.py). Blocks are parsed by worker threads (numpy,
pyarrow and Parquet release the GIL): a block only reads what it is given and the common
file's keys, which do not change while its skeleton file is converted."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from ccp.data import schema
from ccp.data.raw.kernels import (
    bytes_of,
    field_indexes,
    first_bytes,
    parse_ids,
    parse_uints,
    parse_values,
    with_padding,
)
from ccp.data.raw.layout import EXAMPLES_KEPT, Layout, output_schema, show
from ccp.data.raw.line_rules import row_problem


@dataclass
class Context:
    path: Path
    layout: Layout
    lenient: bool
    known_keys: dict | None = None  # skeleton: request key -> line in the common file


@dataclass
class Block:
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


def process_block(ctx: Context, batch: pa.RecordBatch, lines: np.ndarray) -> Block:
    """Parse one block; bad rows are taken out (all of them, or in strict mode up to the first)
    and the rest parsed again, until what remains is clean."""
    result = Block()
    first_bad_line = None
    while True:
        bad, table, repairs = parse_block(ctx, batch, lines)
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
            first_bad_line = _bad_line(ctx, batch, lines, row, missing is not None)
            batch, lines = batch.slice(0, row), lines[:row]
            continue
        kind = "missing_common" if missing is not None else "format"
        result.n_bad[kind] = result.n_bad.get(kind, 0) + len(bad_rows)
        result.bad_lines += [_bad_line(ctx, batch, lines, int(row), missing is not None)
                             for row in bad_rows[:EXAMPLES_KEPT]]
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


def _bad_line(ctx: Context, batch: pa.RecordBatch, lines: np.ndarray, row: int,
              missing_common: bool) -> tuple:
    """(line, column, message, kind) of a row found bad: by the join check or by the parser."""
    if not missing_common:
        return _explain(ctx, batch, row, int(lines[row]))
    key = batch.column("common_feature_index")[row].as_py()
    return (int(lines[row]), "common_feature_index",
            f"request key {show(key)} has no line in {_common_of(ctx.path).name}",
            "missing_common")


def _missing_keys(ctx: Context, batch: pa.RecordBatch) -> tuple[np.ndarray, list]:
    """Skeleton join check -> (mask of rows whose key has no common line, one key per run)."""
    keys = batch.column("common_feature_index")
    n_rows = len(keys)
    if n_rows == 0:
        return np.zeros(0, bool), []
    # Keys come in contiguous runs (~58 impressions per key): look up each run once.
    offsets, data = bytes_of(keys)
    words = data.view(np.uint64).reshape(n_rows, 2)  # every key is 16 bytes by now
    starts = np.flatnonzero(np.r_[True, (words[1:] != words[:-1]).any(axis=1)])
    run_keys = keys.take(pa.array(starts)).to_pylist()
    known = ctx.known_keys
    missing_runs = np.fromiter((k not in known for k in run_keys), bool, len(run_keys))
    missing = np.repeat(missing_runs, np.diff(np.r_[starts, n_rows]))
    return missing, run_keys


def _row_values(batch: pa.RecordBatch, row: int) -> list[bytes]:
    return [column[row].as_py() for column in batch.columns]


def _explain(ctx: Context, batch, row: int, line: int) -> tuple:
    problem = row_problem(ctx.layout, _row_values(batch, row))
    if problem is None:  # the vectorised checks and the per-line rule disagree: a bug here
        raise AssertionError(f"{ctx.path.name} line {line}: flagged as bad, but no problem "
                             f"found in {_row_values(batch, row)!r}")
    return (line, problem[0], problem[1], "format")


def _common_of(skeleton_path: Path) -> Path:
    split = skeleton_path.name[len("sample_skeleton_"):-len(".csv")]
    return skeleton_path.with_name(schema.common_name(split))


def parse_block(ctx: Context, batch: pa.RecordBatch, lines: np.ndarray):
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

    columns = {"line": pa.array(lines, pa.int64())}
    if layout.kind == "skeleton":
        columns["sample_id"] = pa.array(parsed["sample_id"])
        columns["click"] = pa.array(parsed["click"])
        columns["purchase"] = pa.array(parsed["purchase"])
    columns["request_key"] = batch.column("common_feature_index").cast(pa.string())
    repairs = _add_field_columns(columns, layout, triples, batch.num_rows)
    return None, pa.Table.from_pydict(columns, schema=output_schema(layout)), repairs


def _add_field_columns(columns: dict, layout: Layout, triples: _Triples, n_rows: int) -> tuple:
    """Add each field's column(s) to `columns` -> (repaired lines, repeated single fields,
    (row, message) of the first few repairs)."""
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
    repairs.sort()
    return int(repaired.sum()), n_repeated, repairs[:EXAMPLES_KEPT]


# The separator that must follow each separator on a line: \x02 -> \x03 -> \x01 -> \x02.
_NEXT_SEPARATOR = np.array([255, 2, 3, 1], dtype=np.uint8)


@dataclass
class _Triples:
    row: np.ndarray  # row of the block of each triple
    field: np.ndarray  # index into layout.fields
    feature_id: np.ndarray  # int64
    value: np.ndarray  # float32
    count: np.ndarray  # triples per row


def _parse_feature_lists(layout: Layout, column: pa.Array) -> tuple[_Triples | None, np.ndarray]:
    """Split every feature_list of a block into triples -> (triples or None, bad-row mask)."""
    n_rows = len(column)
    line_offsets, data = bytes_of(column)
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

    padded = with_padding(data)
    field_index = field_indexes(layout, padded, field_start, after_field)
    feature_id, id_ok = parse_ids(padded, after_field + 1, after_id)
    value, value_ok = parse_values(padded, after_id + 1, value_end)
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


def _check_columns(layout: Layout, batch: pa.RecordBatch):
    """Vectorised checks of the columns other than feature_list -> (bad mask, parsed)."""
    bad = np.zeros(batch.num_rows, bool)
    parsed = {}
    for name, column in zip(layout.columns, batch.columns):
        if name == "feature_list":
            continue
        offsets, data = bytes_of(column)
        lengths = np.diff(offsets)
        if name in ("sample_id", "feature_num"):
            parsed[name], ok = parse_uints(column, first_bytes(data, offsets[:-1]))
        elif name in ("click", "purchase"):
            byte = first_bytes(data, offsets[:-1])
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
