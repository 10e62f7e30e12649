"""One registry of models, used by the CLI (`python -m bench list`, `--models GLOB`) and tests.

Each family declares its models in `<family>/registry.py` as `ModelSpec`s that name the class
by import path, so listing or selecting models imports neither torch nor the GBDT libraries.
"""

from __future__ import annotations

import fnmatch
import importlib
from dataclasses import dataclass, field

FAMILIES = ("baselines", "neural")
# The groups the report compares (best of each group, one colour each); "floor": the sanity
# floor every real model must beat.
GROUPS = ("GBDT", "neural", "linear", "floor")


@dataclass(frozen=True)
class ModelSpec:
    name: str  # e.g. "lgbm_ctr_x_cvr", "mmoe"
    family: str  # "baselines" or "neural": the package the model lives in
    target: str  # "module.path:ClassName"
    description: str
    params: dict = field(default_factory=dict)  # constructor keyword arguments
    # The report's group, one of GROUPS: declared, never guessed from the name.
    group: str = field(kw_only=True)
    # The model's own tunable knobs (bench.search_space.Param), beside its family's space.
    search: tuple = ()
    # Why the model has no search space at all (then `python -m bench tune` skips it).
    untuned_why: str = ""

    def __post_init__(self):
        if self.group not in GROUPS:
            raise ValueError(f"model {self.family}/{self.name}: group {self.group!r} is not one "
                             f"of {GROUPS}")

    @property
    def key(self) -> str:
        return f"{self.family}/{self.name}"

    def build(self, **overrides):
        module_name, class_name = self.target.split(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        return cls(**{**self.params, **overrides})


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
