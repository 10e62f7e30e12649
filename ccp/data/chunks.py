"""Contiguous row chunks of a split: how training and scoring stay within memory.

A memory-mapped split (ccp.data.stream_encode) is read a chunk at a time: contiguous rows,
so each chunk is a sequential read of its .npy files, and `Split.slice_rows` gives the chunk
with only its own requests. A trainer visits the chunks in a random order each epoch and
shuffles rows within each chunk (a chunk holds ~18k requests of the real data, so batches still
mix many requests and users).
"""

from __future__ import annotations

from ccp.data.npy_cache import is_memory_mapped

AUTO_CHUNK_ROWS = 1 << 20  # ~0.3 GB of model inputs for the aliccp profile


def chunk_rows_for(split, setting: int) -> int:
    """Rows per chunk for `split`: 0 = the whole split at once.

    setting > 0: that many rows; setting < 0: never chunk; setting == 0 (auto): chunk when the
    split is memory-mapped or longer than AUTO_CHUNK_ROWS."""
    if setting != 0:
        return max(setting, 0)
    if is_memory_mapped(split.click) or len(split) > AUTO_CHUNK_ROWS:
        return AUTO_CHUNK_ROWS
    return 0


def chunk_bounds(n_rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    """(start, stop) of each chunk; one chunk of everything when chunk_rows is 0."""
    if chunk_rows <= 0 or n_rows == 0:
        return [(0, n_rows)]
    return [(start, min(start + chunk_rows, n_rows)) for start in range(0, n_rows, chunk_rows)]
