"""ccp.stats against plain-loop and scipy reference computations: each test fails when the
rule it checks changes (unit, seeds in the interval, choice on validation, correction, power)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp
from sklearn.metrics import roc_auc_score

from bench import harness
from ccp import metrics, stats
from ccp.data.dataset import Ragged, Split
from ccp.data.schema import DENSE_FEATURES, IMPRESSION_SINGLE, USER_SINGLE


def make_split(users_of_request, rows_per_request, rng, one_row_requests=False,
               user_effect_sd=1.5) -> tuple[Split, np.ndarray]:
    """Requests of given users (and a list weight of their own, as a request's behaviour
    lists are); a strong user effect makes a user's rows move together. -> (split, P(click))"""
    users_of_request = np.asarray(users_of_request)
    request = np.repeat(np.arange(len(users_of_request)), rows_per_request)
    n = len(request)
    user_codes = np.zeros((len(users_of_request), len(USER_SINGLE)), np.int64)
    user_codes[:, 0] = users_of_request
    effect = rng.normal(0, user_effect_sd, users_of_request.max() + 1)[users_of_request[request]]
    p = 1 / (1 + np.exp(-(-1.0 + effect)))
    click = (rng.random(n) < p).astype(np.int8)
    weights = np.arange(len(user_codes), dtype=np.float32)
    if one_row_requests:  # the processed CSV form: every row its own request
        user_codes, weights, request = user_codes[request], weights[request], np.arange(n)
    n_req = len(user_codes)
    lists = Ragged(np.arange(n_req + 1, dtype=np.int64), np.full(n_req, 5, np.int64), weights)
    empty = Ragged(np.zeros(n + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    return Split("test", click, np.zeros(n, np.int8), np.arange(n), request,
                 np.zeros((n, len(IMPRESSION_SINGLE)), np.int64), {"210": empty},
                 np.zeros((n, len(DENSE_FEATURES)), np.float32),
                 np.array([f"k{i}" for i in range(n_req)]), user_codes, {"109_14": lists}), p


def weighted_bootstrap_loop(labels, scores, units, n_boot, seed):
    """The plain reference: per resample, draw units with replacement and weight their rows."""
    _, index = np.unique(units, return_inverse=True)
    n_units = index.max() + 1
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        weight = np.bincount(rng.integers(0, n_units, n_units), minlength=n_units)[index]
        out.append(roc_auc_score(labels, scores, sample_weight=weight))
    return np.array(out)


def test_bootstrap_resamples_the_declared_unit_not_rows():
    """Users span several requests: evaluate()'s replicates are the user-level bootstrap's, and
    differ from a request- or row-level one (which are narrower here)."""
    rng = np.random.default_rng(0)
    split, p = make_split(rng.integers(2, 40, 200), 10, rng)
    scores = p + rng.normal(0, 0.05, len(p))
    outputs = {"ctr": scores, "cvr": scores, "ctcvr": scores}
    fields = harness.evaluate(outputs, split, "fp", 100, tasks=("ctr",))["ctr"]
    assert fields["resampling_unit"] == "user" and fields["resampling_rule"] == "user (field 101)"
    users = split.user_codes[split.request, 0]
    seed = stats.bootstrap_seed("fp", "ctr")
    by_user = weighted_bootstrap_loop(split.click, scores, users, 100, seed)
    np.testing.assert_allclose(fields["auc_bootstrap"], by_user, atol=2e-6)
    by_request = weighted_bootstrap_loop(split.click, scores, split.request, 100, seed)
    by_row = weighted_bootstrap_loop(split.click, scores, np.arange(len(p)), 100, seed)
    assert np.std(by_user) > 1.3 * np.std(by_request) and np.std(by_user) > 1.3 * np.std(by_row)


def test_rare_users_fall_back_to_requests_and_the_rule_says_so():
    rng = np.random.default_rng(1)
    users = rng.integers(2, 20, 60)
    users[:20] = 1  # rare users pooled under one code: each of their requests its own unit
    split, _ = make_split(users, 5, rng)
    units = stats.resampling_units(split)
    assert units.unit == "user" and "rare or absent users by request" in units.rule
    assert units.n_units == len(np.unique(users[20:])) + 20
    assert units.user_share == pytest.approx(40 / 60)


def test_processed_csv_form_has_no_request_key_and_says_so():
    """Every row its own request: requests are rebuilt from consecutive equal user fields,
    and the unit's name is never plain "request"."""
    rng = np.random.default_rng(2)
    users = rng.integers(2, 30, 50)
    users[::2] = 1  # half the requests from rare users: they need the fallback
    csv_split, _ = make_split(users, 4, rng, one_row_requests=True)
    groups, has_key = stats.request_groups(csv_split)
    assert not has_key
    np.testing.assert_array_equal(groups, np.repeat(np.arange(len(users)), 4))
    units = stats.resampling_units(csv_split)
    assert "no request key" in units.rule and units.rule != "request"
    assert units.n_units == len(np.unique(users[users > 1])) + (users == 1).sum()
    # A file in another order (no two rows of a request adjacent): nothing to rebuild, so
    # rows, and the rule says so.
    order = np.arange(len(csv_split)).reshape(-1, 4).T.ravel()
    shuffled = csv_split.take(order)
    shuffled.request, shuffled.user_codes = np.arange(len(order)), csv_split.user_codes[order]
    shuffled.user_multi = {k: v.take(order) for k, v in csv_split.user_multi.items()}
    assert stats.request_groups(shuffled)[0].max() + 1 == len(order)
    assert stats.resampling_units(shuffled).rule.startswith("user (field 101), rows of rare "
                                                            "or absent users by row")


def reference_combine(values, replicates, level=0.95):
    """Plain loops: variance of the seed-mean over resamples + between-seed variance / k,
    Welch-Satterthwaite df with the resampling part known."""
    k, n_boot = len(values), len(replicates[0])
    mean = sum(values) / k
    averaged = [sum(replicates[s][b] for s in range(k)) / k for b in range(n_boot)]
    avg = sum(averaged) / n_boot
    var_test = sum((x - avg) ** 2 for x in averaged) / (n_boot - 1)
    var_seed = sum((v - mean) ** 2 for v in values) / (k - 1) / k
    total = var_test + var_seed
    df = (k - 1) * (total / var_seed) ** 2
    half = sp.t.ppf(0.5 + level / 2, df) * math.sqrt(total)
    p = 2 * sp.t.sf(abs(mean) / math.sqrt(total), df)
    return mean, mean - half, mean + half, df, p


def test_multi_seed_interval_includes_the_seed_variance():
    """Seeds far apart, resampling tight: the interval must be as wide as the seeds say."""
    rng = np.random.default_rng(3)
    values = [0.70, 0.72, 0.74]
    replicates = [v + rng.normal(0, 0.002, 200) for v in values]
    estimate = stats.combine(values, replicates)
    mean, low, high, df, _ = reference_combine(values, replicates)
    assert estimate.value == pytest.approx(mean)
    assert estimate.interval() == pytest.approx((low, high))
    assert estimate.df == pytest.approx(df) and estimate.seeds_included
    # Without the seed part it would be the resampling interval: about 10x narrower.
    resampling_only = 1.96 * np.std(np.mean(replicates, axis=0), ddof=1)
    assert high - low > 10 * 2 * resampling_only


def test_paired_difference_pairs_seeds_and_resamples_and_matches_loops():
    rng = np.random.default_rng(4)
    base = rng.normal(0.7, 0.01, 200)  # the shared resamples move both models together
    a = stats.SeedScores({0: 0.71, 1: 0.715, 2: 0.705, 3: 0.73},
                         {s: base + d + rng.normal(0, 0.001, 200)
                          for s, d in ((0, 0.01), (1, 0.015), (2, 0.005), (3, 0.03))})
    b = stats.SeedScores({0: 0.70, 1: 0.702, 2: 0.699},
                         {s: base + rng.normal(0, 0.001, 200) for s in (0, 1, 2)})
    estimate = stats.paired_difference(a, b)  # seed 3 of a has no partner: left out
    seeds = [0, 1, 2]
    values = [a.aucs[s] - b.aucs[s] for s in seeds]
    reps = [a.replicates[s] - b.replicates[s] for s in seeds]
    mean, low, high, df, p = reference_combine(values, reps)
    assert estimate.n_seeds == 3 and estimate.value == pytest.approx(mean)
    assert estimate.interval() == pytest.approx((low, high))
    assert estimate.p_value == pytest.approx(p)


def test_one_seed_interval_is_resampling_only_and_says_so():
    reps = np.random.default_rng(5).normal(0.7, 0.01, 300)
    estimate = stats.combine([0.7], [reps])
    assert not estimate.seeds_included and math.isinf(estimate.df)
    low, high = estimate.interval()
    assert high - low == pytest.approx(2 * 1.959964 * np.std(reps, ddof=1), rel=1e-5)


def holm_loop(p_values, alpha):
    """Textbook Holm: reject the smallest p-values while p_(i) <= alpha / (m - i + 1)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = set()
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        rejected.add(i)
    return rejected


@pytest.mark.parametrize("seed", range(20))
def test_holm_adjusted_p_values_reject_what_the_textbook_procedure_rejects(seed):
    rng = np.random.default_rng(seed)
    p_values = list(np.where(rng.random(7) < 0.5, rng.random(7) * 0.03, rng.random(7)))
    adjusted = stats.holm(p_values)
    for alpha in (0.01, 0.05, 0.1):
        assert {i for i, p in enumerate(adjusted) if p <= alpha} == holm_loop(p_values, alpha)
    assert all(q >= p for p, q in zip(p_values, adjusted, strict=True))
    assert stats.holm([0.01, None, 0.04]) == [0.02, None, 0.04]


@pytest.mark.parametrize("df", [math.inf, 30.0, 4.0])
def test_smallest_detectable_difference_has_80_percent_power_at_5_percent(df):
    """Power of the two-sided t test at the detectable difference, by the noncentral t."""
    se = 0.004
    d = stats.detectable_difference(se, df)
    if math.isinf(df):
        crit = sp.norm.ppf(0.975)
        power = sp.norm.sf(crit - d / se) + sp.norm.cdf(-crit - d / se)
        assert power == pytest.approx(0.80, abs=1e-3)
    else:
        crit = sp.t.ppf(0.975, df)
        power = sp.nct.sf(crit, df, d / se) + sp.nct.cdf(-crit, df, d / se)
        assert power == pytest.approx(0.80, abs=0.02)


def test_best_on_validation_breaks_ties_by_name_and_skips_missing():
    assert stats.best_on_validation({"b": 0.7, "a": 0.7, "c": None, "d": float("nan")}) == "a"
    assert stats.best_on_validation({"x": None}) is None


def test_bootstrap_of_all_resamples_at_once_equals_the_loop_with_ties():
    rng = np.random.default_rng(6)
    labels = rng.random(800) < 0.2
    scores = np.round(rng.random(800) + 0.3 * labels, 1)  # many ties, across classes
    groups = rng.integers(0, 90, 800)
    got = metrics.bootstrap_aucs(labels, scores, groups, 60, seed=9)
    np.testing.assert_allclose(got, weighted_bootstrap_loop(labels, scores, groups, 60, 9),
                               atol=1e-12)
