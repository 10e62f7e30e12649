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
