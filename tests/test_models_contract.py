"""The contract every registered model meets, parameterised over the one registry.

A model added to a family's registry is tested here the day it is added.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench import harness
from bench.model import FitContext, check_outputs
from bench.registry import all_specs

SPECS = all_specs()
IDS = [s.key for s in SPECS]


def _fit_predict(spec, data, profile, seed=0):
    from bench.model import seed_everything

    seed_everything(seed)
    model = spec.build()
    model.fit(dataclasses.replace(data, test=None),
              FitContext(seed=seed, threads=1, profile=profile, progress=False))
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


@pytest.mark.parametrize("spec", [s for s in SPECS if s.name != "constant"],
                         ids=[k for k in IDS if not k.endswith("/constant")])
def test_beats_the_constant_prior_on_tiny_synthetic(spec, tiny_data, tiny_profile):
    model, outputs = _fit_predict(spec, tiny_data, tiny_profile)
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
