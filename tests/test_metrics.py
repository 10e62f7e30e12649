import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from ccp import metrics


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(2000) < 0.1
    # Rounded scores make many ties, where a naive rank AUC goes wrong.
    scores = np.round(rng.random(2000) + labels * 0.3, 1)
    assert metrics.auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auc_constant_is_half_and_one_class_is_nan():
    assert metrics.auc([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == 0.5
    assert np.isnan(metrics.auc([0, 0, 0], [0.1, 0.2, 0.3]))
    assert metrics.auc([0, 1], [0.1, 0.9]) == 1.0
    assert metrics.auc([1, 0], [0.1, 0.9]) == 0.0


def test_log_loss_equals_sklearn():
    rng = np.random.default_rng(1)
    labels = rng.random(500) < 0.3
    probs = rng.uniform(0.01, 0.99, 500)
    assert metrics.log_loss(labels, probs) == pytest.approx(sk_log_loss(labels, probs))


def test_bootstrap_with_unit_weights_reproduces_auc_and_pairs_across_models():
    rng = np.random.default_rng(2)
    n = 3000
    groups = rng.integers(0, 300, n)
    labels = rng.random(n) < 0.2
    a = labels * 0.5 + rng.random(n)
    b = labels * 0.2 + rng.random(n)
    reps_a = metrics.bootstrap_aucs(labels, a, groups, 100, seed=7)
    reps_b = metrics.bootstrap_aucs(labels, b, groups, 100, seed=7)
    low, high = metrics.percentile_interval(reps_a)
    assert low < metrics.auc(labels, a) < high
    # Same seed and groups -> the same resamples: paired differences are tighter than unpaired.
    paired_sd = np.std(reps_a - reps_b)
    unpaired_sd = np.sqrt(np.var(reps_a) + np.var(reps_b))
    assert paired_sd < unpaired_sd


def test_bootstrap_interval_covers_true_auc_at_about_nominal_rate():
    """Simulate scores whose population AUC is known and check 95% intervals cover it."""
    from scipy.stats import norm

    shift = 0.8
    true_auc = norm.cdf(shift / np.sqrt(2))  # AUC of N(shift,1) vs N(0,1)
    covered = 0
    trials = 60
    for t in range(trials):
        rng = np.random.default_rng(100 + t)
        n_groups, per = 200, 5
        groups = np.repeat(np.arange(n_groups), per)
        labels = rng.random(n_groups * per) < 0.3
        scores = rng.normal(size=labels.size) + shift * labels
        reps = metrics.bootstrap_aucs(labels, scores, groups, 200, seed=t)
        low, high = metrics.percentile_interval(reps)
        covered += low <= true_auc <= high
    assert 0.85 <= covered / trials <= 1.0


def test_bootstrap_resamples_whole_requests_not_rows():
    """Rows of one request are resampled together, so copies of a row add no information.

    Each request here holds k identical rows (same label, same score). Resampling requests
    must then give the replicates of the data set with one row per request, and an interval
    just as wide; resampling rows would treat the k copies as k independent draws and
    shrink the interval by about sqrt(k).
    """
    rng = np.random.default_rng(11)
    n_requests, k = 300, 9
    labels = rng.random(n_requests) < 0.3
    scores = rng.normal(size=n_requests) + 0.8 * labels
    groups = np.arange(n_requests)
    copied = (np.repeat(labels, k), np.repeat(scores, k), np.repeat(groups, k))
    assert metrics.auc(copied[0], copied[1]) == pytest.approx(metrics.auc(labels, scores))
    one_row = metrics.bootstrap_aucs(labels, scores, groups, 400, seed=5)
    k_rows = metrics.bootstrap_aucs(*copied, 400, seed=5)
    np.testing.assert_allclose(k_rows, one_row, rtol=0, atol=1e-12)
    # The same through interval widths, with unrelated seeds (no reliance on the draw order).
    low, high = metrics.percentile_interval(one_row)
    k_low, k_high = metrics.percentile_interval(metrics.bootstrap_aucs(*copied, 400, seed=6))
    assert 0.75 < (k_high - k_low) / (high - low) < 1.33
