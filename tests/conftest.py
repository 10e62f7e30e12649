"""Shared fixtures: the real 200-row sample and the tiny synthetic data set, loaded once."""

from __future__ import annotations

import pytest

from ccp.data.loader import SAMPLE_DIR_CANDIDATES

try:  # registers and loads the Hypothesis profiles (HYPOTHESIS_PROFILE=slow for thousands)
    import hypothesis_profiles  # noqa: F401
except ImportError:  # hypothesis not installed: the generated-input tests skip themselves
    pass



@pytest.fixture(scope="session")
def sample_dir():
    found = [d for d in SAMPLE_DIR_CANDIDATES if d.exists()]
    if not found:
        pytest.skip("shared/data/aliccp-sample not found beside the repository")
    return found[0]


@pytest.fixture(scope="session")
def sample_data(sample_dir):
    """The 200 real processed rows; min_count 1 so that ids get their own codes."""
    from ccp.data.loader import load

    return load("aliccp-csv", sample_dir, min_count=1, progress=False)


@pytest.fixture(scope="session")
def tiny_raw_dir(tmp_path_factory):
    from ccp.data.loader import ensure_synthetic

    return ensure_synthetic("tiny", 0, tmp_path_factory.mktemp("tiny") / "raw", progress=False)


@pytest.fixture(scope="session")
def tiny_data(tiny_raw_dir):
    from ccp.data.loader import load

    return load("synthetic", tiny_raw_dir, synth_profile="tiny", seed=0, progress=False)


@pytest.fixture(scope="session")
def tiny_profile():
    from ccp.profiles import get_profile

    return get_profile("tiny")
