"""Reading a gate's committed baseline (reports/*_baseline.json) with one clear error each
for a missing file and a file that is not JSON; the gates check their own fields."""

from __future__ import annotations

import json
from pathlib import Path


def read(path, gate: str) -> dict:
    """The baseline at `path` of `python -m bench GATE` ("latency", "accuracy")."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no {gate} baseline at {path}; create one with "
                                f"`python -m bench {gate} --update-baseline`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}, line {error.lineno}: not JSON ({error.msg})") from None
