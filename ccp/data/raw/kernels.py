"""Byte-parsing kernels: numbers from the bytes of a whole block at once, no Python loop per item.

Feature ids are computed from one or two 8-byte words each (digit arithmetic on uint64, no text
copied), field ids are compared as 8-byte words, and values by pyarrow's float cast of the
block's distinct value texts only (a few hundred). Every kernel returns (values, ok mask); the
mask only says which items are bad, line_rules.py says why."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ccp.data.raw.layout import COMMON, MAX_INT_DIGITS, SKELETON, Layout

PAD = 64  # zero bytes after a block's text: the widest fixed-width read


def bytes_of(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
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


def first_bytes(data: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """data[starts], 0 where a start lies at the end (an empty last item)."""
    return np.append(data, np.uint8(0))[starts]


def parse_uints(text: pa.Array, first_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def parse_ids(padded: np.ndarray, starts: np.ndarray, ends: np.ndarray):
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
        values[very_long], ok[very_long] = parse_uints(
            _gather_text(padded, starts[very_long], ends[very_long]), padded[starts[very_long]])
    return values, ok


def _parse_floats(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """float32 values (pyarrow's float syntax) -> (values, ok mask: parsed and finite)."""
    values, ok = _cast_or_bad(text, pa.float32())
    return values, ok & np.isfinite(values)


def parse_values(padded: np.ndarray, starts: np.ndarray, ends: np.ndarray):
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


def with_padding(data: np.ndarray) -> np.ndarray:
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


def _field_words(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """A file's field ids as sorted uint64 words, and each word's index in layout.fields."""
    words = np.array([_word_of(f.encode()) for f in layout.fields], np.uint64)
    order = np.argsort(words)
    return words[order], order.astype(np.int16)


_FIELD_WORDS = {"skeleton": _field_words(SKELETON), "common": _field_words(COMMON)}


def field_indexes(layout: Layout, padded: np.ndarray, starts, ends) -> np.ndarray:
    """Index into layout.fields of each field id padded[starts:ends]; -1 when unknown."""
    lengths = ends - starts
    words = _words_at(padded, starts, lengths)
    known, index = _FIELD_WORDS[layout.kind]
    at = np.minimum(np.searchsorted(known, words), len(known) - 1)
    return np.where((known[at] == words) & (lengths <= 8), index[at], -1)
