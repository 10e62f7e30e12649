"""One registry of models, used by the CLI (`python -m bench list`, `--models GLOB`) and tests.

Each family declares its models in `<family>/registry.py` as `ModelSpec`s (ccp.model) that
name the class by import path, so listing or selecting models imports neither torch nor the
GBDT libraries.
"""

from __future__ import annotations

import fnmatch
import importlib

from ccp.model import ModelSpec

FAMILIES = ("baselines", "neural")


def all_specs() -> list[ModelSpec]:
    specs = []
    for family in FAMILIES:
        module = importlib.import_module(f"{family}.registry")
        specs.extend(module.SPECS)
    keys = [s.key for s in specs]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise ValueError(f"models registered twice: {sorted(duplicates)}")
    return specs


def select(patterns: list[str] | None) -> list[ModelSpec]:
    """Models whose `family/name` or bare name matches any glob; all of them for None."""
    specs = all_specs()
    if not patterns:
        return specs
    chosen = [s for s in specs
              if any(fnmatch.fnmatchcase(s.key, p) or fnmatch.fnmatchcase(s.name, p)
                     for p in patterns)]
    if not chosen:
        raise ValueError(f"no registered model matches {patterns}; see `python -m bench list`")
    return chosen


def get(key: str) -> ModelSpec:
    for spec in all_specs():
        if key in (spec.key, spec.name):
            return spec
    raise KeyError(f"no registered model {key!r}; see `python -m bench list`")
