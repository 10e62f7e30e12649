"""A plain, slow, line-by-line reading of Ali-CCP files: the reference the generated-input
tests compare the project's readers and encoders with.

Written from shared/ALICCP.md and the rules the readers document (ccp/data/raw/,
ccp/data/processed_csv.py, ccp/data/encode.py), not from their code: one Python loop per
line and per triple, exact decimal arithmetic for values, no numpy vectorisation.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ccp.data import schema

MAX_DIGITS = 18
UINT = re.compile(rb"[0-9]{1,18}")
HEX16 = re.compile(rb"[0-9a-fA-F]{16}")
# A number as text (no inf or nan): the syntax both readers accept.
NUMBER = re.compile(rb"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
FLOAT32_MAX = Fraction(int(np.float32(np.finfo(np.float32).max)))
FLOAT32_OVERFLOW = FLOAT32_MAX + Fraction(2) ** 103  # half an ulp above the largest float32

SKELETON_COLUMNS = ("sample_id", "click", "purchase", "common_feature_index", "feature_num",
                    "feature_list")
COMMON_COLUMNS = ("common_feature_index", "feature_num", "feature_list")


def float32_of(text: bytes) -> float | None:
    """The float32 nearest to the decimal number `text` (ties to even), or None when the text
    is not a number or the nearest float32 is infinite."""
    if not NUMBER.fullmatch(text):
        return None
    mantissa, _, exponent = text.lower().partition(b"e")
    if exponent and abs(int(exponent)) > 400:  # far beyond float32: avoid huge Fractions
        return 0.0 if int(exponent) < 0 or Fraction(mantissa.decode()) == 0 else None
    exact = Fraction(text.decode())
    if abs(exact) >= FLOAT32_OVERFLOW:
        return None
    guess = np.float32(float(max(min(exact, FLOAT32_MAX), -FLOAT32_MAX)))
    candidates = [c for c in (np.nextafter(guess, np.float32(-np.inf)), guess,
                              np.nextafter(guess, np.float32(np.inf))) if np.isfinite(c)]
    best = min(candidates, key=lambda c: (abs(Fraction(float(c)) - exact),
                                          int(np.array(c).view(np.uint32)) & 1))
    return float(best)


def physical_lines(data: bytes) -> list[bytes]:
    """The lines of a file without their ends: LF or CRLF; the last may lack its end (or end
    with a lone CR); a UTF-8 byte order mark at the start is not part of line 1."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.endswith(b"\n") or data.endswith(b"\r"):
        data = data[:-1]
    return [line[:-1] if line.endswith(b"\r") else line for line in data.split(b"\n")]


# ---------------------------------------------------------------- raw files


@dataclass
class RawFile:
    rows: list[dict] = field(default_factory=list)  # the well-formed lines, as the cache's rows
    bad: list[tuple[int, str | None, str]] = field(default_factory=list)  # (line, field, kind)
    repaired_lines: int = 0
    fatal: bool = False  # the whole file is refused (it is empty), even when lenient


def _column_problem(name: str, value: bytes) -> bool:
    if name in ("sample_id", "feature_num"):
        return not UINT.fullmatch(value)
    if name in ("click", "purchase"):
        return value not in (b"0", b"1")
    return not HEX16.fullmatch(value)  # the request key


def _triples(feature_list: bytes, fields: tuple) -> list[tuple[str, int, float]] | None:
    """The (field, feature id, value) triples of a feature_list; None if one is malformed."""
    out = []
    for triple in (feature_list.split(b"\x01") if feature_list else []):
        if triple.count(b"\x02") != 1:
            return None
        name, rest = triple.split(b"\x02")
        if rest.count(b"\x03") != 1:
            return None
        feature_id, value_text = rest.split(b"\x03")
        number = float32_of(value_text)
        if name.decode("latin-1") not in fields or not UINT.fullmatch(feature_id) \
                or number is None:
            return None
        out.append((name.decode(), int(feature_id), number))
    return out


def line_problem(line: bytes, kind: str) -> str | None | bool:
    """The column named for the first problem of a raw line (None for an empty line), or
    False when the line is well formed."""
    columns = SKELETON_COLUMNS if kind == "skeleton" else COMMON_COLUMNS
    fields = _fields(kind)
    if line == b"":
        return None
    if b"\r" in line:
        return columns[min(line[:line.index(b"\r")].count(b","), len(columns) - 1)]
    cells = line.split(b",")
    if len(cells) < len(columns):
        return columns[len(cells)]
    if len(cells) > len(columns):
        return columns[-1]
    if all(c == b"" for c in cells):
        return None
    for name, value in zip(columns, cells):
        if name != "feature_list" and _column_problem(name, value):
            return name
    triples = _triples(cells[-1], fields)
    if triples is None:
        return "feature_list"
    if int(cells[-2]) != len(triples):
        return "feature_num"
    if not line.isascii():
        return columns[min(line[:_first_non_ascii(line)].count(b","), len(columns) - 1)]
    return False


def _first_non_ascii(line: bytes) -> int:
    return next(i for i, byte in enumerate(line) if byte >= 0x80)


def _fields(kind: str) -> tuple:
    if kind == "skeleton":
        return schema.IMPRESSION_SINGLE + schema.ITEM_MULTI
    return schema.USER_SINGLE + schema.USER_MULTI


def cache_row(line_number: int, line: bytes, kind: str) -> tuple[dict, bool]:
    """A well-formed line as the cache's row; and whether a single field repeated on it."""
    cells = line.split(b",")
    row = {"line": line_number}
    if kind == "skeleton":
        row.update(sample_id=int(cells[0]), click=int(cells[1]), purchase=int(cells[2]))
        single, multi = schema.IMPRESSION_SINGLE, schema.ITEM_MULTI
    else:
        single, multi = schema.USER_SINGLE, schema.USER_MULTI
    row["request_key"] = cells[-3].decode()
    for f in single:
        row[f] = None
    if kind == "skeleton":
        for f in schema.COMBINATION:
            row[f"{f}_value"] = None
    for f in multi:
        row[f], row[f"{f}_value"] = [], []
    repeated = False
    for name, feature_id, value in _triples(cells[-1], single + multi):
        if name in multi:
            row[name].append(feature_id)
            row[f"{name}_value"].append(value)
        elif row[name] is None:  # a repeated single field keeps its first triple
            row[name] = feature_id
            if kind == "skeleton" and name in schema.COMBINATION:
                row[f"{name}_value"] = value
        else:
            repeated = True
    return row, repeated


def read_raw_file(data: bytes, kind: str, known_keys: set | None = None) -> RawFile:
    """One raw file. Common: a key repeating an earlier well-formed line's is bad
    (duplicate_key). Skeleton: a well-formed line whose key is not in known_keys is bad
    (missing_common)."""
    out = RawFile()
    if data == b"":  # not a file of zero lines but an error that stops even lenient reading
        out.fatal = True
        return out
    seen = set()
    for number, line in enumerate(physical_lines(data), start=1):
        problem = line_problem(line, kind)
        if problem is not False:
            out.bad.append((number, problem, "format"))
            continue
        row, repeated = cache_row(number, line, kind)
        key = row["request_key"]
        if kind == "common" and key in seen:
            out.bad.append((number, "common_feature_index", "duplicate_key"))
            continue
        if kind == "skeleton" and key not in known_keys:
            out.bad.append((number, "common_feature_index", "missing_common"))
            continue
        seen.add(key)
        out.repaired_lines += repeated
        out.rows.append(row)
    return out


def read_raw_split(common: bytes, skeleton: bytes) -> tuple[RawFile, RawFile]:
    common_file = read_raw_file(common, "common")
    keys = {row["request_key"] for row in common_file.rows}
    return common_file, read_raw_file(skeleton, "skeleton", keys)


def in_test_half(key: str) -> bool:
    """The documented split rule: the low bit of a 1-byte BLAKE2b digest of the key."""
    return bool(hashlib.blake2b(key.encode(), digest_size=1).digest()[0] & 1)


# ---------------------------------------------------------------- the encoded data set


@dataclass
class Impression:
    """One kept impression of a split, in raw ids, with its request's user side joined."""

    sample_id: int
    click: int
    purchase: int
    request_key: str
    single: dict  # every single field (user and impression) -> raw id or None
    lists: dict  # every multi field -> [(raw id, weight)]
    combination: dict  # combination field -> value or 0.0


def impressions(skeleton_rows: list[dict], common_rows: list[dict],
                keep_purchase_without_click: bool) -> list[Impression]:
    users = {row["request_key"]: row for row in common_rows}
    out = []
    for row in skeleton_rows:
        if row["purchase"] and not row["click"] and not keep_purchase_without_click:
            continue
        user = users[row["request_key"]]
        out.append(Impression(
            row["sample_id"], row["click"], row["purchase"], row["request_key"],
            {**{f: user[f] for f in schema.USER_SINGLE},
             **{f: row[f] for f in schema.IMPRESSION_SINGLE}},
            {**{f: list(zip(user[f], user[f"{f}_value"])) for f in schema.USER_MULTI},
             **{f: list(zip(row[f], row[f"{f}_value"])) for f in schema.ITEM_MULTI}},
            {f: row[f"{f}_value"] or 0.0 for f in schema.COMBINATION}))
    return out


def vocabularies(train: list[Impression], min_count: int) -> dict[str, list[int]]:
    """Kept raw ids per field, sorted: seen at least min_count times over train impressions
    (a user id once per impression of its request)."""
    counts = {f: {} for f in schema.ALL_FIELDS}
    for imp in train:
        for f, raw_id in imp.single.items():
            if raw_id is not None:
                counts[f][raw_id] = counts[f].get(raw_id, 0) + 1
        for f, items in imp.lists.items():
            for raw_id, _ in items:
                counts[f][raw_id] = counts[f].get(raw_id, 0) + 1
    return {f: sorted(i for i, n in c.items() if n >= min_count) for f, c in counts.items()}


def code(vocabulary: list[int], raw_id: int | None) -> int:
    """0 for an absent field, 1 for an id not kept, 2 + rank for a kept one."""
    if raw_id is None:
        return schema.CODE_MISSING
    return schema.FIRST_CODE + vocabulary.index(raw_id) if raw_id in vocabulary \
        else schema.CODE_RARE


def raw_dense(imp: Impression) -> list[float]:
    """The 12 dense features before scaling: combination values, then each behaviour list's
    mean weight (0 when empty) and log(1 + length)."""
    out = [imp.combination[f] for f in schema.COMBINATION]
    for f in schema.USER_MULTI:
        weights = [w for _, w in imp.lists[f]]
        out.append(math.fsum(weights) / len(weights) if weights else 0.0)
    out += [math.log1p(len(imp.lists[f])) for f in schema.USER_MULTI]
    return out


def raw_dense_magnitude(imp: Impression) -> list[float]:
    """The size that float32 rounding of each raw_dense value is relative to: a mean of
    weights of both signs is summed in float32, so its error follows the mean |weight|."""
    out = [abs(imp.combination[f]) for f in schema.COMBINATION]
    for f in schema.USER_MULTI:
        weights = [abs(w) for _, w in imp.lists[f]]
        out.append(math.fsum(weights) / len(weights) if weights else 0.0)
    return out + [math.log1p(len(imp.lists[f])) for f in schema.USER_MULTI]


def assert_dataset_equals(data, per_split: dict[str, list[Impression]], min_count: int):
    """Every impression of every split, mapped through vocabularies fitted here on train,
    equals the loaded data set's; dense values equal raw_dense before scaling (within float32
    rounding of a sum), and the scaling is train's range."""
    vocab = vocabularies(per_split["train"], min_count)
    assert data.vocab_sizes == {f: schema.FIRST_CODE + len(v) for f, v in vocab.items()}
    train_dense = np.array([raw_dense(i) for i in per_split["train"]]).reshape(-1, 12)
    magnitude = np.array([raw_dense_magnitude(i) for i in per_split["train"]]).reshape(-1, 12)
    low = train_dense.min(axis=0) if len(train_dense) else np.zeros(12)
    high = train_dense.max(axis=0) if len(train_dense) else np.ones(12)
    scaling = data.info["dense_scaling"]
    got_low = np.broadcast_to(np.asarray(scaling["min"], np.float64), 12)
    got_span = np.broadcast_to(np.asarray(scaling["span"], np.float64), 12)
    scale = np.abs(low) + np.abs(high) + magnitude.max(axis=0, initial=0.0) + 1e-30
    assert np.all(np.abs(got_low - low) <= 1e-5 * scale), (got_low, low)
    span = np.where(high - low > 0, high - low, 1.0)
    assert np.all(np.abs(got_span - span) <= 1e-5 * scale + 1e-6 * span), (got_span, span)
    for name, imps in per_split.items():
        s = data.splits[name]
        assert len(s) == len(imps), name
        assert s.sample_id.tolist() == [i.sample_id for i in imps], name
        assert s.click.tolist() == [i.click for i in imps], name
        assert s.purchase.tolist() == [i.purchase for i in imps], name
        assert [str(k) for k in s.request_key[s.request]] == [i.request_key for i in imps], name
        user = s.user_codes[s.request]
        for k, f in enumerate(schema.USER_SINGLE):
            assert user[:, k].tolist() == [code(vocab[f], i.single[f]) for i in imps], f
        for k, f in enumerate(schema.IMPRESSION_SINGLE):
            assert s.item_codes[:, k].tolist() == [code(vocab[f], i.single[f])
                                                   for i in imps], f
        for f in schema.MULTI_FIELDS:
            lists = s.user_multi[f].take(s.request) if f in schema.USER_MULTI \
                else s.item_multi[f]
            got = [list(zip(lists.codes[a:b].tolist(), lists.weights[a:b].tolist()))
                   for a, b in zip(lists.offsets[:-1], lists.offsets[1:])]
            assert got == [[(code(vocab[f], raw_id), w) for raw_id, w in i.lists[f]]
                           for i in imps], (name, f)
        want = np.array([raw_dense(i) for i in imps]).reshape(-1, 12)
        size = np.array([raw_dense_magnitude(i) for i in imps]).reshape(-1, 12)
        tolerance = 1e-5 * (size + np.abs(want) + np.abs(got_low) + got_span) + 1e-6
        # Dense values back in raw units; the split's values are clipped to train's range.
        unscaled = s.dense.astype(np.float64) * got_span + got_low
        clipped = np.clip(want, got_low, got_low + got_span)
        bad = np.abs(unscaled - clipped) > tolerance
        assert not bad.any(), (name, np.argwhere(bad)[:3], unscaled[bad][:3], clipped[bad][:3])


# ---------------------------------------------------------------- the processed CSV form

LABELS = ("click", "purchase")
PROCESSED_COLUMNS = LABELS + schema.PROCESSED_SPARSE + schema.PROCESSED_DENSE


@dataclass
class ProcessedFile:
    rows: list[dict] = field(default_factory=list)  # line, click, purchase, then by column
    bad: list[tuple[int, str | None, str]] = field(default_factory=list)  # (line, field, kind)
    n_lines: int = 0  # data lines (after the header)
    fatal: bool = False


def _cell_problem(name: str, value: bytes) -> str | None:
    """The kind of problem of one cell (label, sparse_id, dense_value), or None."""
    if name in LABELS:
        return None if value in (b"0", b"1") else "label"
    if name in schema.PROCESSED_SPARSE:
        return None if UINT.fullmatch(value) else "sparse_id"
    return None if float32_of(value) is not None else "dense_value"


def read_processed(data: bytes) -> ProcessedFile:
    """A processed CSV file with a valid header: its rows and bad lines. A line is counted once,
    under its first problem: a lone carriage return, empty line, field count, then the labels,
    the sparse ids and the dense values in schema order."""
    lines = physical_lines(data)
    header = lines[0].split(b",")
    out = ProcessedFile(n_lines=len(lines) - 1)
    out.fatal = out.n_lines == 0  # a header without rows is refused, even when lenient
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split(b",")
        if b"\r" in line:  # not part of a CRLF line end: a bad character of this line
            commas = line[:line.index(b"\r")].count(b",")
            column = header[commas].decode() if commas < len(header) else None
            out.bad.append((number, column, "carriage_return"))
            continue
        if line == b"":
            out.bad.append((number, None, "empty_line"))
            continue
        if len(cells) != len(header):
            column = header[len(cells)].decode() if len(cells) < len(header) else None
            out.bad.append((number, column, "field_count"))
            continue
        by_name = {name.decode(): value for name, value in zip(header, cells)}
        if all(by_name[name] == b"" for name in PROCESSED_COLUMNS):
            out.bad.append((number, None, "empty_line"))
            continue
        problem = next(((name, kind) for name in PROCESSED_COLUMNS
                        if (kind := _cell_problem(name, by_name[name]))), None)
        if problem:
            out.bad.append((number, *problem))
            continue
        row = {"line": number}
        for name in PROCESSED_COLUMNS:
            value = by_name[name]
            row[name] = float32_of(value) if name in schema.PROCESSED_DENSE else int(value)
        out.rows.append(row)
    return out


def processed_impressions(rows: list[dict], split: str, keep_pwc: bool) -> list[Impression]:
    """Rows of the processed form as impressions: each row its own request ("split:line"),
    each multi field a one-id list weighted by its dense column (210: weight 1)."""
    out = []
    for row in rows:
        if row["purchase"] and not row["click"] and not keep_pwc:
            continue
        lists = {f: [(row[f], row[f"D{f}"])] for f in schema.USER_MULTI}
        lists.update({f: [(row[f], 1.0)] for f in schema.ITEM_MULTI})
        out.append(Impression(row["line"], row["click"], row["purchase"],
                              f"{split}:{row['line']}",
                              {f: row[f] for f in schema.SINGLE_FIELDS}, lists,
                              {f: row[f"D{f}"] for f in schema.COMBINATION}))
    return out
