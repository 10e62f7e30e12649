"""A short digest that says which input files, and which settings, a result was computed on.

Each file contributes its name, its size and a content hash. Files up to FULL_HASH_LIMIT bytes
are hashed whole. Larger ones (the real Ali-CCP files are 0.5 to 20 GB) are hashed on a sample:
SAMPLE_BLOCKS blocks of SAMPLE_BLOCK_BYTES at evenly spaced offsets, the first at 0 and the last
ending at the end of the file, plus the size. A sampled hash reads 64 MiB per file, so checking
whether a cache is current takes seconds, not minutes; it catches a truncated, extended or
replaced file, but not an edit of a few bytes between two sampled blocks. Content hashes are
SHA-256 (hardware-accelerated on current CPUs: about 1.7 GB/s here, twice BLAKE2b).
The file's directory and modification time are left out on purpose: a copy of the same data
elsewhere has the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

FULL_HASH_LIMIT = 64 << 20
SAMPLE_BLOCKS = 64
SAMPLE_BLOCK_BYTES = 1 << 20
DIGEST_HEX_CHARS = 16
_READ_CHUNK = 8 << 20


def _full_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sampled_hash(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    digest.update(str(size).encode())
    last_start = size - SAMPLE_BLOCK_BYTES
    with open(path, "rb") as fh:
        for i in range(SAMPLE_BLOCKS):
            fh.seek(last_start * i // (SAMPLE_BLOCKS - 1))
            digest.update(fh.read(SAMPLE_BLOCK_BYTES))
    return digest.hexdigest()


def describe_file(path: str | os.PathLike) -> dict:
    """Name, size, content hash and how the hash was taken ("full" or "sampled")."""
    path = Path(path)
    size = path.stat().st_size
    if size <= FULL_HASH_LIMIT:
        return {"name": path.name, "size": size, "hash": _full_hash(path), "hash_mode": "full"}
    return {"name": path.name, "size": size, "hash": _sampled_hash(path, size),
            "hash_mode": f"sampled {SAMPLE_BLOCKS} x {SAMPLE_BLOCK_BYTES} bytes"}


def fingerprint_files(paths, settings: dict) -> str:
    """Hex digest of the files (in the order given) and the preparation settings."""
    described = [describe_file(p) for p in paths]
    text = json.dumps({"files": described, "settings": settings}, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=DIGEST_HEX_CHARS // 2).hexdigest()
