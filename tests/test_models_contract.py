"""The contract every registered model meets, parameterised over the one registry.

A model added to a family's registry is tested here the day it is added.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import harness
from bench.registry import all_specs
from ccp.model import check_outputs

SPECS = all_specs()
IDS = [s.key for s in SPECS]
# Known failures of the CVR check below, each with what was measured; strict, so a fix shows.
CVR_KNOWN_FAILURES = {
    "neural/aitm": "pCVR = pCTCVR / pCTR ranks clicked tiny test rows below chance "
                   "(CVR AUC 0.419 at seed 0)",
}
_TINY_FITS = {}


def _fit_predict(spec, data, profile, seed=0):
    model = harness.fitted(spec, data, profile, seed, threads=1)
    return model, check_outputs(model.predict(data.test), len(data.test))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_runs_on_the_real_sample_rows(spec, sample_data, tiny_profile):
    model, outputs = _fit_predict(spec, sample_data, tiny_profile)
    for values in outputs.values():
        assert values.min() >= 0 and values.max() <= 1
    how = getattr(model, "OUTPUTS_HOW", {})
    assert set(how) >= {"ctr", "cvr", "ctcvr"}, "say how each output is formed"


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_tiny_synthetic_same_seed_same_predictions(spec, tiny_data, tiny_profile):
    _, first = _fit_predict(spec, tiny_data, tiny_profile, seed=3)
    _, again = _fit_predict(spec, tiny_data, tiny_profile, seed=3)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])


def _fit_tiny(spec, tiny_data, tiny_profile):
    """Seed-0 fit on tiny synthetic data, shared by the floor checks below."""
    key = (spec.key, id(tiny_data))
    if key not in _TINY_FITS:
        _TINY_FITS[key] = _fit_predict(spec, tiny_data, tiny_profile)
    return _TINY_FITS[key]


NOT_CONSTANT = [s for s in SPECS if s.name != "constant"]


@pytest.mark.parametrize("spec", NOT_CONSTANT, ids=[s.key for s in NOT_CONSTANT])
def test_beats_the_constant_prior_on_tiny_synthetic(spec, tiny_data, tiny_profile):
    model, outputs = _fit_tiny(spec, tiny_data, tiny_profile)
    # A single-task model may declare an output it does not estimate (a train prior); that
    # output must really be constant, and only the other outputs must beat the prior.
    constant = set(getattr(model, "CONSTANT_OUTPUTS", ()))
    for key in constant:
        assert np.ptp(outputs[key]) == 0, f"{spec.key} declares {key} constant but it varies"
    scores = harness.evaluate(outputs, tiny_data.test, tiny_data.fingerprint, n_bootstrap=2,
                              tasks=tuple(t for t in ("ctr", "ctcvr") if t not in constant))
    for task, fields in scores.items():
        assert fields["auc"] > 0.5, f"{spec.key} {task} AUC {fields['auc']:.4f} is no better " \
                                    "than the constant prior's 0.5"


@pytest.mark.parametrize("spec", [
    pytest.param(s, marks=pytest.mark.xfail(strict=True, reason=CVR_KNOWN_FAILURES[s.key]))
    if s.key in CVR_KNOWN_FAILURES else s for s in NOT_CONSTANT], ids=[s.key for s in NOT_CONSTANT])
def test_cvr_beats_a_random_score_on_clicked_tiny_rows(spec, tiny_data, tiny_profile):
    """CVR AUC on clicked test rows (the ESMM definition), for every model that estimates CVR.

    Tiny has few conversions (about 160 of about 900 clicked test rows), so "above 0.5" alone
    would pass a random score half the time: the floor is two standard deviations of a random
    score's AUC above 0.5 (the Mann-Whitney null; a random score passes it about 2% of the
    time). The generator's CVR signal lets every model that estimates CVR clear it.
    """
    model, outputs = _fit_tiny(spec, tiny_data, tiny_profile)
    if "cvr" in set(getattr(model, "CONSTANT_OUTPUTS", ())):
        pytest.skip(f"{spec.key} declares its CVR output a constant prior")
    fields = harness.evaluate(outputs, tiny_data.test, tiny_data.fingerprint, n_bootstrap=2,
                              tasks=("cvr",))["cvr"]
    positives, negatives = fields["n_positives"], fields["n_rows"] - fields["n_positives"]
    assert positives >= 50 and negatives >= 50, "tiny no longer supports a CVR check"
    floor = 0.5 + 2 * math.sqrt((positives + negatives + 1) / (12 * positives * negatives))
    assert fields["auc"] > floor, f"{spec.key} CVR AUC {fields['auc']:.4f} on clicked rows " \
                                  f"is not above a random score's 0.5 + 2 sd = {floor:.4f}"
