"""Hypothesis profiles of the generated-input tests: `default` (a few hundred examples in all,
well under a minute) and `slow` (HYPOTHESIS_PROFILE=slow: SLOW_FACTOR times as many)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SLOW_FACTOR = 10
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
_COMMON = {"deadline": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("default", **_COMMON)
settings.register_profile("slow", **_COMMON)
settings.load_profile(PROFILE)


def examples(n: int) -> settings:
    """A test's number of generated examples under the current profile."""
    return settings(max_examples=n * (SLOW_FACTOR if PROFILE == "slow" else 1))
