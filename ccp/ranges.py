"""Allowed values of settings, declared beside the dataclass fields that hold them.

A field declared with `setting(default, low=..., high=..., choices=...)` carries its range in
the field's metadata; `apply_overrides` turns override values (command-line text or Python
values) into the field's type and checks them, and `check_fields` checks a whole instance (the
named profiles, the defaults). Both raise ValueError with one line that names the setting and
what is allowed, which the command line prints as `error: ...` with exit status 2.
Used by ccp.profiles.Profile and neural.config.NeuralConfig.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class Allowed:
    """Bounds of a number (low/high inclusive unless the *_open flag says otherwise) or a set
    of choices; for a tuple, the bounds apply to each element and `nonempty` to the tuple."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    nonempty: bool = False
    note: str = ""  # what special values mean, e.g. "0 = all rows"

    def describe(self, kind: str) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {_number(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {_number(self.high)}")
        text = f"{kind} {' and '.join(parts)}".strip()
        if self.nonempty:
            text += ", at least one"
        return f"{text} ({self.note})" if self.note else text

    def contains(self, value) -> bool:
        if self.choices:
            return value in self.choices
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def setting(default, **allowed):
    """A dataclass field with its allowed values, e.g. `setting(2048, low=1)`."""
    return field(default=default, metadata={"allowed": Allowed(**allowed)})


_KIND = {bool: "true or false", int: "an integer", float: "a number", str: "a text"}


def _kind(default) -> str:
    if isinstance(default, tuple):
        return "comma-separated integers, each"
    return _KIND.get(type(default), type(default).__name__)


def _convert(default, value):
    """`value` in the type of `default`; text is parsed as the command line gives it."""
    if isinstance(default, tuple):
        items = value.split(",") if isinstance(value, str) else value
        return tuple(int(str(v).strip()) for v in items if str(v).strip())
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() not in ("1", "true", "yes", "0", "false", "no"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes")
        return bool(value)
    if isinstance(default, int) and isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return type(default)(value)


def check_option(name: str, value, kind: str = "an integer", given=None, **allowed) -> None:
    """A command-line option's value within `allowed` (the keywords of Allowed); `given`: the
    text as typed, when it differs from `value`."""
    check_value(name, value, Allowed(**allowed), kind, given)


def check_value(name: str, value, allowed: Allowed, kind: str, given=None) -> None:
    """Raise ValueError naming `name` and its range unless `value` is allowed."""
    values = value if isinstance(value, tuple) else (value,)
    empty = isinstance(value, tuple) and not value and allowed.nonempty
    if empty or not all(allowed.contains(v) for v in values):
        shown = given if given is not None else value
        if isinstance(shown, tuple):
            shown = ",".join(map(str, shown))
        shown = str(shown) if str(shown) else "''"
        raise ValueError(f"setting {name}={shown} is out of range: allowed "
                         f"{allowed.describe(kind)}")


def _allowed(f) -> Allowed:
    return f.metadata.get("allowed", Allowed())


def check_fields(instance) -> None:
    """Every field of a dataclass instance within its declared range."""
    for f in fields(instance):
        value = getattr(instance, f.name)
        check_value(f.name, value, _allowed(f), _kind(f.default))


def apply_overrides(instance, overrides: dict, what: str) -> dict:
    """`overrides` converted to the fields' types and checked; unknown keys are an error that
    lists the known ones (`what` names the kind of setting in that message)."""
    known = {f.name: f for f in fields(instance)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {sorted(known)}")
    typed = {}
    for name, value in overrides.items():
        default, allowed = getattr(instance, name), _allowed(known[name])
        try:
            typed[name] = _convert(default, value)
        except (TypeError, ValueError):
            what_type = _kind(default).removesuffix(", each")
            raise ValueError(f"setting {name}={value!s} is not {what_type}: allowed "
                             f"{allowed.describe(_kind(default))}") from None
        check_value(name, typed[name], allowed, _kind(default), given=value)
    return typed


def described_fields(instance) -> list[tuple[str, object, str]]:
    """(name, value, allowed values in words) of every field of a settings dataclass."""
    return [(f.name, getattr(instance, f.name), _allowed(f).describe(_kind(f.default)))
            for f in fields(instance)]
