"""The one split rule: validation and test are the official test file halved by request key.

A hash of the request key (no random state) decides the half, so every impression of a
request lands on the same side and the rule is the same on every machine and every run.
"""

from __future__ import annotations

import hashlib

import numpy as np


def in_test_half(request_keys) -> np.ndarray:
    """True where a request key belongs to the test half, False for the validation half."""
    return np.fromiter(
        (hashlib.blake2b(str(k).encode(), digest_size=1).digest()[0] & 1 for k in request_keys),
        dtype=bool,
        count=len(request_keys),
    )


def capped_rows(request_keys, request: np.ndarray, max_rows: int) -> np.ndarray | None:
    """Rows of whole requests, at most `max_rows` of them, the same for every model, seed and
    family of every run on these data (None: no cap, or the split is within it).

    Requests are ranked by a hash of their key (no random state, as the split rule), and taken
    in that order while their impressions fit under the cap."""
    if not max_rows or len(request) <= max_rows:
        return None
    ranks = np.fromiter((int.from_bytes(hashlib.blake2b(str(k).encode(), digest_size=8,
                                                        person=b"train-cap").digest(), "little")
                         for k in request_keys), dtype=np.uint64, count=len(request_keys))
    sizes = np.bincount(request, minlength=len(request_keys))
    order = np.argsort(ranks, kind="stable")
    kept = order[np.cumsum(sizes[order]) <= max_rows]
    keep = np.zeros(len(request_keys), dtype=bool)
    keep[kept] = True
    return np.flatnonzero(keep[request])
