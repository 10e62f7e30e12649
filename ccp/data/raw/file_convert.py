"""One raw file -> one Parquet file: blocks read in order, parsed by worker threads, and taken
back in order, so that bad lines are reported and rows written in line order.

Memory stays flat: a few blocks are in flight and one Parquet row group is buffered; what grows
with the data is the set of request keys of the current split (~0.9M keys on the real data),
used for the join check."""

from __future__ import annotations

import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ccp.data.raw.blocks import Block, Context, process_block
from ccp.data.raw.checked_file import CheckedFile, LineNumbers, open_csv_reader
from ccp.data.raw.layout import EXAMPLES_KEPT, RawFormatError, output_schema, show
from ccp.data.raw.line_rules import column_count_problem

ROW_GROUP_BYTES = 64 << 20  # in-memory bytes of parsed blocks per Parquet row group
PROGRESS_EVERY_S = 10.0


@dataclass
class FileStats:
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
class Report:
    skipped_examples: list = field(default_factory=list)  # [file, line, reason]
    repair_examples: list = field(default_factory=list)


class FileConversion:
    """Converts one raw file (`ctx.path`) into `out_path`, adding to `stats` and `report`.
    Strict mode raises RawFormatError at the first bad line, in line order; lenient mode counts
    bad lines and keeps a few as examples. `run` returns the common file's request key -> line,
    the skeleton's join check (None for a skeleton file)."""

    def __init__(self, ctx: Context, out_path: Path, stats: FileStats, report: Report,
                 block_bytes: int, workers: int, progress: bool):
        self.ctx, self.out_path, self.stats, self.report = ctx, out_path, stats, report
        self.block_bytes, self.workers, self.progress = block_bytes, workers, progress
        self.numbers = LineNumbers()
        self.invalid = deque()  # (line, column, message, kind) of the rows pyarrow did not parse
        self.n_invalid = 0
        common = ctx.layout.kind == "common"
        self.keys = {} if common else None  # common: request key -> line of its first line
        self.skeleton_keys = None if common else set()  # skeleton: the distinct keys
        self.pending = deque()  # (future, last line covered by the block), oldest first
        self.row_group = []  # parsed blocks waiting to be written as one Parquet row group
        self.done_bytes = 0
        self.source = self.writer = None
        self.started = self.last_print = 0.0

    def run(self) -> dict | None:
        self.source = CheckedFile(self.ctx.path, self.ctx.layout)
        self.started = self.last_print = time.perf_counter()
        self.writer = pq.ParquetWriter(self.out_path, output_schema(self.ctx.layout),
                                       compression="zstd", compression_level=1)
        try:
            self._read_and_write()
        finally:
            self.writer.close()
            self.source.close()
        self.stats.lines = self.numbers.next_line - 1
        self.stats.seconds = time.perf_counter() - self.started
        if self.skeleton_keys is not None:
            self.stats.distinct_keys = len(self.skeleton_keys)
        return self.keys

    def _read_and_write(self):
        try:
            reader = open_csv_reader(self.source, self.ctx.layout, self.block_bytes,
                                     self._on_invalid)
        except pa.ArrowInvalid as error:  # the first block is read here
            raise self._unreadable(error) from None
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            try:
                read_error = self._submit_blocks(reader, pool)
                while self.pending:
                    self._finish_oldest()
                if read_error is not None:
                    raise read_error
                self._flush_row_group()
            finally:
                for block, _ in self.pending:
                    block.cancel()
        self.numbers.take(0)
        self._report_invalid(float("inf"))

    def _submit_blocks(self, reader, pool: ThreadPoolExecutor) -> RawFormatError | None:
        """Hand each block to a worker, finishing the oldest while more than `workers` are in
        flight -> the error that ended the reading early, if any (raised once the blocks before
        it are finished)."""
        n_columns = len(self.ctx.layout.columns)
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return None
            except pa.ArrowInvalid as error:
                return self._unreadable(error)
            lines = self.numbers.take(batch.num_rows)
            self.done_bytes += sum(c.buffers()[2].size for c in batch.columns
                                   if c.buffers()[2] is not None) + batch.num_rows * n_columns
            self.pending.append((pool.submit(process_block, self.ctx, batch, lines),
                                 self.numbers.next_line - 1))
            if (self.invalid and not self.ctx.lenient
                    and self.numbers.next_line > self.invalid[0][0]):
                return None  # strict: no need to read past a column-count error
            while len(self.pending) > self.workers:
                self._finish_oldest()
            self._show_progress()

    def _finish_oldest(self):
        """Take the oldest block's result: report its bad lines in order, write its rows."""
        block, covered = self.pending.popleft()
        result = block.result()
        table = result.table
        bad_lines = [(item, 0) for item in result.bad_lines]  # 0: counted in result.n_bad
        if table is not None and self.keys is not None:
            table, repeated = _register_keys(self.keys, result, table)
            bad_lines = sorted(bad_lines + [(item, 1) for item in repeated],
                               key=lambda pair: pair[0][0])
        for item, counted in bad_lines:  # merged with the unparsed rows, in line order
            self._report_invalid(item[0])
            self._report_bad_line(item, counted)
        for kind, count in result.n_bad.items():
            self.stats.skipped[kind] = self.stats.skipped.get(kind, 0) + count
        self._report_invalid(covered + 1)
        if table is not None:
            self._write_rows(result, table)

    def _write_rows(self, result: Block, table: pa.Table):
        stats = self.stats
        if self.skeleton_keys is not None:
            self.skeleton_keys.update(result.keys)
            clicks = table.column("click").to_numpy()
            purchases = table.column("purchase").to_numpy()
            stats.clicks += int(clicks.sum())
            stats.purchases += int(purchases.sum())
            stats.click_and_purchase += int((clicks & purchases).sum())
            stats.purchase_without_click += int((purchases & (1 - clicks)).sum())
        if table.num_rows:
            self.row_group.append(table)
        if sum(t.nbytes for t in self.row_group) >= ROW_GROUP_BYTES:
            self._flush_row_group()
        stats.rows_written += table.num_rows
        stats.repaired_lines += result.repaired_lines
        stats.repaired_triples += result.repaired_triples
        for line, message in result.repair_examples:
            if len(self.report.repair_examples) < EXAMPLES_KEPT:
                self.report.repair_examples.append([self.ctx.path.name, line, message])

    def _flush_row_group(self):
        if self.row_group:
            self.writer.write_table(pa.concat_tables(self.row_group))
            self.row_group.clear()

    def _on_invalid(self, row) -> str:
        """pyarrow's invalid-row handler: a row with a wrong column count, or a marker for a
        line with a bad character."""
        self.n_invalid += 1
        problem = self.source.pop_problem(row.text)
        if problem is None:
            # Explain the first few only: a wholly broken file must not fill memory.
            problem = column_count_problem(self.ctx.layout, row.text.encode(),
                                           row.actual_columns) \
                if self.n_invalid <= 2 * EXAMPLES_KEPT else (None, "")
        self.invalid.append((row.number, *problem, "format"))
        self.numbers.skipped.append(row.number)
        return "skip"

    def _report_invalid(self, before_line):
        """Report the unparsed rows before a line; strict mode raises the first."""
        while self.invalid and self.invalid[0][0] < before_line:
            self._report_bad_line(self.invalid.popleft(), 1)

    def _report_bad_line(self, item: tuple, counted: int):
        """Strict mode: raise. Lenient: count (unless counted already) and keep a few examples."""
        line, column, message, kind = item
        if not self.ctx.lenient:
            raise RawFormatError(self.ctx.path, line, column, message)
        if counted:
            self.stats.skipped[kind] = self.stats.skipped.get(kind, 0) + counted
        if len(self.report.skipped_examples) < EXAMPLES_KEPT:
            where = f"field {column}: " if column else ""
            self.report.skipped_examples.append([self.ctx.path.name, line, where + message])

    def _unreadable(self, error) -> RawFormatError:
        return RawFormatError(self.ctx.path, self.numbers.next_line, None,
                              f"unreadable from this line on (a line longer than the read block "
                              f"of {self.block_bytes:,} bytes?): {error}")

    def _show_progress(self):
        if self.progress and time.perf_counter() - self.last_print > PROGRESS_EVERY_S:
            self.last_print = time.perf_counter()
            rate = self.done_bytes / 1e6 / (self.last_print - self.started)
            print(f"  {self.ctx.path.name}: {self.done_bytes / 1e6:,.0f} of "
                  f"{self.stats.bytes / 1e6:,.0f} MB, {rate:.0f} MB/s", file=sys.stderr,
                  flush=True)


def _register_keys(keys: dict, result: Block, table: pa.Table) -> tuple[pa.Table, list]:
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
