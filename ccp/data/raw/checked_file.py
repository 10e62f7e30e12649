"""Reading a raw file with pyarrow's CSV reader: the checked-file shim it reads through, the
reader's options, and the 1-based line number of each row it returns.

pyarrow reads the file through `CheckedFile`, which hands it blocks ending at a line end and
swaps a line with a lone carriage return or a non-ASCII byte for a marker line before pyarrow
sees it: pyarrow would take the \\r for a line break, or stop on the non-UTF-8 text of a row
with a wrong column count. The marker comes back through pyarrow's invalid-row handler under
the line's own number, with the original line's problem."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ccp.data.raw.layout import EXAMPLES_KEPT, Layout
from ccp.data.raw.line_rules import line_problem

_SUSPECT = re.compile(rb"[\x80-\xff]|\r(?!\n)")  # a non-ASCII byte, or a CR not before LF
_BOM = b"\xef\xbb\xbf"


class CheckedFile:
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

    def __init__(self, path: Path, layout: Layout):
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
                self.problems[self.n_markers] = line_problem(self.layout, data[start:end])
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


def open_csv_reader(source: CheckedFile, layout: Layout, block_bytes: int, on_invalid):
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


class LineNumbers:
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
