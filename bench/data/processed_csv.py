"""Reader for the common processed CSV form (the layout of shared/data/aliccp-sample).

Columns: click, purchase, the 23 sparse fields as integer codes, 8 dense columns. Only the last
value of each multi-valued field survives in this form, so each becomes a one-element list;
its dense column (D109_14 ...) becomes that element's weight, and D508 ... the combination values.
Every row is its own request: the form has no request key.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from bench.data import schema
from bench.data.encode import RawPart

LABELS = ("click", "purchase")
EXPECTED_COLUMNS = LABELS + schema.PROCESSED_SPARSE + schema.PROCESSED_DENSE
# File names of the three splits as the common pipeline writes them.
SPLIT_FILES = {"train": "ali_ccp_train{suffix}.csv", "valid": "ali_ccp_val{suffix}.csv",
               "test": "ali_ccp_test{suffix}.csv"}


def find_split_files(data_dir: Path) -> dict[str, Path]:
    data_dir = Path(data_dir)
    for suffix in ("", "_sample"):
        paths = {s: data_dir / p.format(suffix=suffix) for s, p in SPLIT_FILES.items()}
        if all(p.exists() for p in paths.values()):
            return paths
    expected = ", ".join(p.format(suffix="[_sample]") for p in SPLIT_FILES.values())
    raise FileNotFoundError(f"{data_dir}: processed Ali-CCP CSV files not found "
                            f"(expected {expected})")


def _numeric(frame: pd.DataFrame, column: str, path: Path, integer: bool) -> np.ndarray:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna()
    if integer:
        bad = bad | (values != np.floor(values))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{path.name} line {row + 2}, field {column}: expected {kind}, "
                         f"got {raw.iloc[row]!r}")
    return values.to_numpy()


def read_processed_csv(path: Path, split: str) -> RawPart:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path.name} line 1: the file is empty (expected a header row)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in EXPECTED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path.name} line 1, field {missing[0]}: column missing from the "
                         f"header (expected {', '.join(EXPECTED_COLUMNS)})")
    n = len(frame)
    if n == 0:
        raise ValueError(f"{path.name} line 2: no data rows after the header")
    lines = np.arange(2, n + 2, dtype=np.int64)
    labels = {}
    for column in LABELS:
        values = _numeric(frame, column, path, integer=True)
        if not np.isin(values, (0, 1)).all():
            row = int(np.flatnonzero(~np.isin(values, (0, 1)))[0])
            raise ValueError(f"{path.name} line {row + 2}, field {column}: expected 0 or 1, "
                             f"got {frame[column].iloc[row]!r}")
        labels[column] = values.astype(np.int8)
    codes = {f: _numeric(frame, f, path, integer=True).astype(np.int64)
             for f in schema.PROCESSED_SPARSE}
    dense = {c: _numeric(frame, c, path, integer=False).astype(np.float32)
             for c in schema.PROCESSED_DENSE}
    keys = pa.array([f"{split}:{line}" for line in lines])
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
