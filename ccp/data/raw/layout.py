"""The two raw file layouts, the Parquet schema they convert to, and the error every raw-input
reader raises (also the processed-CSV reader): file, 1-based line, column, message."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow as pa

from ccp.data import schema

EXAMPLES_KEPT = 20  # skipped / repaired lines listed in the report
MAX_INT_DIGITS = 18  # every id of at most 18 digits fits int64


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


@dataclass(frozen=True)
class Layout:
    kind: str  # "skeleton" or "common"
    columns: tuple  # raw column names, in file order
    single: tuple  # single-valued fields: the first occurrence on a line is kept
    valued: tuple  # single fields whose value is kept too, as F_value
    multi: tuple  # multi-valued fields: list of ids and list of values

    @property
    def fields(self) -> tuple:
        return self.single + self.multi


SKELETON = Layout("skeleton", ("sample_id", "click", "purchase", "common_feature_index",
                               "feature_num", "feature_list"),
                  schema.IMPRESSION_SINGLE, schema.COMBINATION, schema.ITEM_MULTI)
COMMON = Layout("common", ("common_feature_index", "feature_num", "feature_list"),
                schema.USER_SINGLE, (), schema.USER_MULTI)


def output_schema(layout: Layout) -> pa.Schema:
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
