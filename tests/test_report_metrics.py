"""The numbers behind the report, checked against known cases: GAUC, ROC points, reliability
bins, and the paired bootstrap that decides "best not significantly better than runner-up"."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from ccp import metrics
from ccp.stats import SeedScores, paired_difference


@pytest.mark.parametrize("seed", range(3))
def test_group_auc_equals_a_loop_over_users_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    users = rng.integers(0, 150, n)
    labels = rng.random(n) < 0.15
    scores = np.round(rng.random(n) + 0.3 * labels, 1)  # ties inside users
    aucs, weights = [], []
    for user in np.unique(users):
        mine = users == user
        if 0 < labels[mine].sum() < mine.sum():
            aucs.append(roc_auc_score(labels[mine], scores[mine]))
            weights.append(mine.sum())
    result = metrics.group_auc(labels, scores, users)
    assert result["gauc"] == pytest.approx(np.average(aucs, weights=weights), abs=1e-12)
    assert result["gauc_groups"] == len(aucs)
    assert result["gauc_row_share"] == pytest.approx(sum(weights) / n)


def test_group_auc_ignores_between_user_differences():
    """A score that only separates users (not items within a user) has GAUC 0.5."""
    users = np.repeat(np.arange(50), 20)
    rng = np.random.default_rng(0)
    labels = rng.random(1000) < np.repeat(np.linspace(0.05, 0.6, 50), 20)
    user_rate_score = np.repeat(np.linspace(0.05, 0.6, 50), 20)
    assert metrics.auc(labels, user_rate_score) > 0.6
    assert metrics.group_auc(labels, user_rate_score, users)["gauc"] == pytest.approx(0.5)


def test_roc_points_follow_sklearn_and_integrate_to_the_auc():
    rng = np.random.default_rng(1)
    labels = rng.random(4000) < 0.1
    scores = np.round(rng.random(4000) + 0.4 * labels, 2)
    fpr, tpr = metrics.roc_points(labels, scores, n_points=501)
    sk_fpr, sk_tpr, _ = roc_curve(labels, scores)
    # Between vertices the curve is a straight line, so interpolating sklearn's curve agrees.
    assert np.max(np.abs(np.interp(fpr, sk_fpr, sk_tpr) - tpr)) < 1e-4
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(labels, scores), abs=1e-4)
    assert fpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert metrics.roc_points([1, 1], [0.2, 0.3]) == ([], [])


def test_reliability_bins_recover_a_calibrated_score():
    rng = np.random.default_rng(2)
    p = rng.beta(1, 20, 200_000)
    labels = rng.random(len(p)) < p
    bins = metrics.reliability_bins(labels, p, n_bins=10)
    assert len(bins) == 10 and sum(b[2] for b in bins) == len(p)
    for predicted, observed, count in bins:
        assert observed == pytest.approx(predicted, abs=4 * np.sqrt(predicted / count) + 1e-3)
    # A score twice too high shows up as predicted ~ 2 x observed in every bin.
    for predicted, observed, _ in metrics.reliability_bins(labels, 2 * p):
        assert predicted / observed == pytest.approx(2, rel=0.2)


def test_paired_bootstrap_interval_covers_the_true_difference_at_about_nominal_rate():
    """Two correlated scores with known population AUCs, rows correlated within requests.

    Score = shift x label + request effect + noise, unit variance in each class, so the AUC is
    Phi(shift / sqrt(2)); the two models share the request effect and part of the noise, as
    two models on the same rows do. The paired 95% interval of AUC(a) - AUC(b) must cover the
    true difference in about 95% of data sets, and be narrower than an unpaired one.
    """
    from scipy.stats import norm

    shift_a, shift_b = 0.8, 0.65
    true_diff = norm.cdf(shift_a / np.sqrt(2)) - norm.cdf(shift_b / np.sqrt(2))
    trials, covered, paired_wider = 60, 0, 0
    for t in range(trials):
        rng = np.random.default_rng(500 + t)
        n_groups, per = 250, 6
        groups = np.repeat(np.arange(n_groups), per)
        labels = rng.random(n_groups * per) < 0.25
        request = rng.normal(0, np.sqrt(0.4), n_groups)[groups]
        shared = rng.normal(0, np.sqrt(0.3), labels.size)
        a = shift_a * labels + request + shared + rng.normal(0, np.sqrt(0.3), labels.size)
        b = shift_b * labels + request + shared + rng.normal(0, np.sqrt(0.3), labels.size)
        reps_a = metrics.bootstrap_aucs(labels, a, groups, 200, seed=t)
        reps_b = metrics.bootstrap_aucs(labels, b, groups, 200, seed=t)
        estimate = paired_difference(
            SeedScores({0: metrics.auc(labels, a)}, {0: reps_a}),
            SeedScores({0: metrics.auc(labels, b)}, {0: reps_b}))
        low, high = estimate.interval()
        covered += low <= true_diff <= high
        unpaired = reps_a - np.random.default_rng(t).permutation(reps_b)
        u_low, u_high = metrics.percentile_interval(unpaired)
        paired_wider += (high - low) >= (u_high - u_low)
    assert 0.85 <= covered / trials <= 1.0
    assert paired_wider <= trials // 10


def test_paired_difference_of_identical_models_is_exactly_zero():
    rng = np.random.default_rng(3)
    reps = rng.normal(0.7, 0.01, 100)
    same = SeedScores({0: 0.7, 1: 0.71}, {0: reps, 1: reps + 0.01})
    estimate = paired_difference(same, SeedScores(dict(same.aucs), dict(same.replicates)))
    assert estimate.interval() == (0, 0) and estimate.p_value == 1.0
