"""The compiled predict path (lleaves) gives the library's own scores, within 1e-6."""

from __future__ import annotations

import numpy as np
import pytest

from bench.harness import fitted
from bench.registry import get

pytest.importorskip("lleaves")
TOLERANCE = 1e-6


def _fit(name, data, profile, **params):
    return fitted(get(name), data, profile, 0, threads=1, model_settings=params)


def _assert_same(model, split):
    library = model.predict(split)
    compiled = model.predict_fast(split)
    for task in ("ctr", "cvr", "ctcvr"):
        assert np.abs(compiled[task] - library[task]).max() <= TOLERANCE, task


@pytest.mark.parametrize("name", ["lgbm_ctr_x_cvr", "xgb_ctr_x_cvr"])
def test_compiled_equals_library_on_tiny_synthetic(name, tiny_data, tiny_profile):
    model = _fit(name, tiny_data, tiny_profile)
    assert all(b is not None for b in model.boosters.values())
    _assert_same(model, tiny_data.test)
    _assert_same(model, tiny_data.test.take(np.arange(1)))  # a one-row request


@pytest.mark.parametrize("name", ["lgbm_ctr", "xgb_ctr"])
def test_compiled_equals_library_with_high_cardinality_categories(name, tiny_data,
                                                                 tiny_profile):
    """Native categorical splits over hundreds of codes, the hardest case for the rewrite."""
    model = _fit(name, tiny_data, tiny_profile, encoding="native")
    _assert_same(model, tiny_data.test)


@pytest.mark.parametrize("name", ["lgbm_ctcvr", "xgb_ctcvr"])
def test_compiled_equals_library_on_the_real_sample_rows(name, sample_data, tiny_profile):
    _assert_same(_fit(name, sample_data, tiny_profile), sample_data.test)


def test_xgboost_rewrite_handles_missing_values_and_categories():
    """Random data with NaN in numeric columns and categories beyond every split's list."""
    import xgboost

    from baselines.compiled import compile_booster

    rng = np.random.default_rng(0)
    n = 4000
    X = np.column_stack([rng.integers(0, 40, n), rng.normal(size=n), rng.normal(size=n)])
    X[rng.random(n) < 0.2, 1] = np.nan
    y = ((X[:, 0] % 3 == 0) ^ (np.nan_to_num(X[:, 1]) > 0.3)).astype(int)
    matrix = xgboost.DMatrix(X, label=y, feature_types=["c", "q", "q"],
                             enable_categorical=True)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 4, "nthread": 1,
                             "base_score": 0.3}, matrix, 25)
    booster.set_param({"nthread": 1})
    probe = X.copy()
    probe[:50, 0] = 45  # categories never seen in training
    compiled = compile_booster("xgboost", booster, categorical=[0])
    np.testing.assert_allclose(compiled.predict(probe), booster.inplace_predict(probe),
                               atol=TOLERANCE, rtol=0)
