"""The regime study's generator knob (synth.generate(overrides=...)) leaves the defaults alone."""

from __future__ import annotations

import hashlib
import json

import pyarrow.parquet as pq
import pytest

from ccp.data import synth

# Digests of the tiny profile's files (seed 0) written by the generator before `overrides`
# existed (main at 287539c): the data, hence every fingerprint, must not change.
TINY_SEED0_DIGESTS = {
    "common_features_test.csv": "8046e00e0209c486",
    "common_features_train.csv": "73673ec2204a924a",
    "sample_skeleton_test.csv": "4ede442be301f365",
    "sample_skeleton_train.csv": "d1ac96a0f8dec6ec",
    "truth_test.parquet": "219dc893bae3ecc5",
    "truth_train.parquet": "3f271aa745c2bd42",
}


def digests(folder) -> dict:
    out = {}
    for name in TINY_SEED0_DIGESTS:
        path = folder / name
        if name.endswith(".csv"):
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        else:  # the values, not the Parquet bytes (which carry the writer's version), of the
            # columns the digests were recorded with (the achievable-ceiling columns came after)
            table, digest = pq.read_table(path), hashlib.sha256()
            for column in ("sample_id", "p_click", "p_conversion"):
                digest.update(table.column(column).to_numpy().tobytes())
            out[name] = digest.hexdigest()[:16]
    return out


@pytest.mark.parametrize("overrides", [None, {}])
def test_default_profile_files_are_unchanged(tmp_path, overrides):
    info = synth.generate(tmp_path, "tiny", seed=0, progress=False, overrides=overrides)
    assert digests(tmp_path) == TINY_SEED0_DIGESTS
    assert "overrides" not in info


def test_overrides_move_the_rates_and_are_recorded(tmp_path):
    info = synth.generate(tmp_path, "tiny", seed=0, progress=False,
                          overrides={"target_cvr": 0.4, "relatedness": 0.9})
    assert json.loads((tmp_path / synth.INFO_NAME).read_text())["overrides"] == {
        "target_cvr": 0.4, "relatedness": 0.9}
    assert info["params"]["relatedness"] == 0.9
    train = info["counts"]["train"]
    # Default tiny: 15% purchase | click; asked 40%.
    assert abs(train["cvr_given_click"] - 0.4) < 0.05
    assert digests(tmp_path)["truth_train.parquet"] != TINY_SEED0_DIGESTS["truth_train.parquet"]


def test_unknown_override_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic parameter.*'cvr'"):
        synth.generate(tmp_path, "tiny", overrides={"cvr": 0.1})
