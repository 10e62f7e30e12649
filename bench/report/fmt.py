"""Number formatting shared by tables, captions and figures (one place, so they agree)."""

from __future__ import annotations

import math

DASH = "—"


def missing(x) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def auc(x) -> str:
    return DASH if missing(x) else f"{x:.4f}"


def signed(x, digits: int = 4) -> str:
    return DASH if missing(x) else f"{x:+.{digits}f}"


def interval(low, high) -> str:
    return DASH if missing(low) or missing(high) else f"[{low:.4f}, {high:.4f}]"


def num(x, digits: int = 4) -> str:
    return DASH if missing(x) else f"{x:.{digits}f}"


def seconds(x) -> str:
    if missing(x):
        return DASH
    if x < 0.01:
        return f"{x:.1g} s"
    return f"{x:.2f} s" if x < 10 else f"{x:.1f} s" if x < 600 else f"{x / 60:.1f} min"


def ms(x) -> str:
    if missing(x):
        return DASH
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def count(n) -> str:
    return DASH if missing(n) else f"{int(n):,}"


def size(n) -> str:
    """Parameter counts: 3 / 12.3k / 4.56M."""
    if missing(n):
        return DASH
    n = int(n)
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1e3:.1f}k"
    return f"{n / 1e6:.2f}M"


def pct(x, digits: int = 2) -> str:
    return DASH if missing(x) else f"{100 * x:.{digits}f}%"


def seeds(values) -> str:
    values = list(values)
    return ", ".join(str(s) for s in values) if values else DASH
