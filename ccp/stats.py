"""The statistical protocol of every verdict, in one place (README: "Statistical protocol").

- Unit. Test rows are resampled by the largest independent unit the data has: the user
  (field 101) where the user is known; rows of rare or absent users (codes 1 and 0, which pool
  many users) by request; by row only where there is no request either. The processed CSV form
  has no request key (every row is its own "request"); there, requests are reconstructed as
  runs of consecutive rows with the same user-side fields (`request_groups`), which falls back
  to single rows when the file is shuffled. Every model of a run gets the same resamples.
- Seeds. A model's AUC is the mean over its training seeds, evaluated on the same rows.
- Intervals and tests. Variance components: the variance of the seed-averaged AUC (or paired
  AUC difference) over unit-bootstrap resamples, plus the variance between seeds divided by
  the number of seeds; a t interval and two-sided t test with Welch-Satterthwaite degrees of
  freedom (the seed part is estimated from k - 1 degrees of freedom, the bootstrap part is
  treated as known). Why not a bootstrap over seeds as well: with 3 seeds it has 10 distinct
  resamples and underestimates the seed variance by a factor (k - 1) / k; a mixed model needs
  per-row scores, which an AUC does not decompose into. The bootstrap part also holds the
  test-sampling noise of each seed's own deviation, so the interval is slightly conservative.
  With one seed, training variance is not included, and every verdict says so.
- Choice. "Best overall" and "best of a group" are chosen on the validation split (mean AUC over
  seeds); the test split only measures them.
- Correction. Holm's step-down method over every hypothesis the report tests (family-wise error
  at 5%): few hypotheses (two per task), and each is read as a claim on its own.
- Power. The smallest difference a paired comparison detects at 80% power and a 5% two-sided
  level: (t(1 - alpha/2, df) + t(power, df)) times its standard error, from the run's own
  variance of paired differences.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
POWER = 0.80
LEVEL = 1 - ALPHA
CORRECTION = "Holm"
METHOD = ("variance components: unit-bootstrap variance of the seed-averaged AUC + variance "
          "between seeds / seeds; t with Welch-Satterthwaite df")


# ---------------------------------------------------------------- the resampling unit


def request_groups(split) -> tuple[np.ndarray, bool]:
    """(a request id per row, whether the data has a request key).

    Without a key (every row its own request: the processed CSV form), requests are rebuilt as
    runs of consecutive rows whose user-side fields (single codes, list codes and weights) are
    all equal: one request's impressions share one user context, and files written in request
    order keep them together. A shuffled file gives runs of one row: rows."""
    request = np.asarray(split.request)
    if len(request) == 0 or len(np.unique(request)) < len(request):
        return request, True
    same = np.ones(len(request) - 1, dtype=bool)
    codes = split.user_codes[request]
    same &= (codes[1:] == codes[:-1]).all(axis=1)
    for lists in split.user_multi.values():
        starts = lists.offsets[request]
        lengths = lists.offsets[request + 1] - starts
        # One-value lists in this form; longer lists compare by their first value and length.
        first = np.where(lengths > 0, starts, 0)
        code = np.where(lengths > 0, lists.codes[first], -1)
        weight = np.where(lengths > 0, lists.weights[first], np.nan)
        same &= (lengths[1:] == lengths[:-1]) & (code[1:] == code[:-1])
        same &= (weight[1:] == weight[:-1]) | (np.isnan(weight[1:]) & np.isnan(weight[:-1]))
    return np.concatenate(([0], np.cumsum(~same))), False


@dataclass(frozen=True)
class Units:
    ids: np.ndarray  # one unit id per row
    unit: str  # "user", "request" or "row": the unit of most rows
    rule: str  # in words, for records and reports
    n_units: int
    user_share: float  # of rows resampled by user


def resampling_units(split, rows: np.ndarray | None = None) -> Units:
    """The unit of every row (of `rows`, a mask or indices, when given): user where known,
    else request (reconstructed without a request key), else row."""
    from ccp.data.schema import CODE_RARE

    requests, has_key = request_groups(split)
    users = split.user_codes[np.asarray(split.request), 0]
    if rows is not None:
        requests, users = requests[rows], users[rows]
    known = users > CODE_RARE
    request_ids = np.unique(requests, return_inverse=True)[1]
    singletons = len(request_ids) and request_ids.max() + 1 == len(request_ids)
    fallback = "row" if singletons else "request"
    # Users first (codes), then the fallback units numbered after the largest user code.
    ids = np.where(known, users, users.max(initial=0) + 1 + request_ids)
    ids = np.unique(ids, return_inverse=True)[1]
    share = float(known.mean()) if len(known) else 0.0
    if share == 1.0:
        unit, rule = "user", "user (field 101)"
    elif share > 0.0:
        unit, rule = "user", f"user (field 101), rows of rare or absent users by {fallback}"
    else:
        unit, rule = fallback, fallback
    if not has_key:
        rule += (" (no request key in this form: requests rebuilt as runs of consecutive rows "
                 "with the same user-side fields)")
    return Units(ids, unit, rule, int(ids.max()) + 1 if len(ids) else 0, share)


def bootstrap_seed(fingerprint: str, task: str, split: str = "test") -> int:
    """Same resamples for every model and seed on the same rows, so replicates pair."""
    key = f"{fingerprint}:{task}" if split == "test" else f"{fingerprint}:{task}:{split}"
    digest = hashlib.blake2b(key.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


# ---------------------------------------------------------------- seeds + resampling


@dataclass(frozen=True)
class Estimate:
    """A seed-averaged AUC or paired AUC difference, with its combined uncertainty."""

    value: float
    se: float | None  # combined standard error; None when not testable
    se_resampling: float | None
    se_seeds: float | None  # None with one seed: training variance not included
    df: float  # Welch-Satterthwaite degrees of freedom (inf: normal)
    n_seeds: int

    @property
    def seeds_included(self) -> bool:
        return self.se_seeds is not None

    def interval(self, level: float = LEVEL) -> tuple[float | None, float | None]:
        if self.se is None:
            return None, None
        half = _t_quantile(0.5 + level / 2, self.df) * self.se
        return self.value - half, self.value + half

    @property
    def p_value(self) -> float | None:
        """Two-sided, against a true value of 0 (for differences)."""
        if self.se is None:
            return None
        if self.se == 0:
            return 1.0 if self.value == 0 else 0.0
        from scipy import stats

        return float(2 * stats.t.sf(abs(self.value) / self.se, self.df))

    def detectable(self, alpha: float = ALPHA, power: float = POWER) -> float | None:
        return None if self.se is None else detectable_difference(self.se, self.df, alpha,
                                                                  power)


def _t_quantile(q: float, df: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf(q) if not math.isfinite(df) else stats.t.ppf(q, df))


def combine(values, replicates) -> Estimate:
    """Estimate from per-seed values (k,) and their unit-bootstrap replicates (k, B), the same
    resamples for every seed; replicates None (or B < 2): not testable."""
    values = np.asarray(values, dtype=np.float64)
    k = len(values)
    mean = float(values.mean())
    seed_var = float(values.var(ddof=1)) / k if k >= 2 else None
    if replicates is None or np.shape(replicates)[-1] < 2:
        return Estimate(mean, None, None, None if seed_var is None else math.sqrt(seed_var),
                        math.inf, k)
    averaged = np.asarray(replicates, dtype=np.float64).reshape(k, -1).mean(axis=0)
    averaged = averaged[np.isfinite(averaged)]
    test_var = float(averaged.var(ddof=1)) if len(averaged) >= 2 else 0.0
    total = test_var + (seed_var or 0.0)
    df = math.inf
    if seed_var:  # Welch-Satterthwaite, the resampling part taken as known
        df = (k - 1) * (total / seed_var) ** 2
    return Estimate(mean, math.sqrt(total), math.sqrt(test_var),
                    None if seed_var is None else math.sqrt(seed_var), df, k)


@dataclass(frozen=True)
class SeedScores:
    """One model on one task and split: AUC and unit-bootstrap replicates, per seed."""

    aucs: dict[int, float]
    replicates: dict[int, np.ndarray]

    @classmethod
    def from_records(cls, records: list[dict]) -> SeedScores:
        aucs = {r["seed"]: r["auc"] for r in records if r.get("auc") is not None}
        reps = {r["seed"]: np.array([np.nan if x is None else x for x in r["auc_bootstrap"]],
                                    dtype=np.float64)
                for r in records if r.get("auc_bootstrap") and r["seed"] in aucs}
        return cls(aucs, reps)

    def estimate(self) -> Estimate:
        seeds = sorted(self.aucs)
        return combine([self.aucs[s] for s in seeds], _stacked(self.replicates, seeds))


def _stacked(replicates: dict, seeds: list[int]) -> np.ndarray | None:
    if not seeds or any(s not in replicates for s in seeds):
        return None
    if len({len(replicates[s]) for s in seeds}) != 1:
        return None
    return np.stack([replicates[s] for s in seeds])


def paired_difference(a: SeedScores, b: SeedScores) -> Estimate | None:
    """AUC(a) - AUC(b) on the seeds both have, paired seed by seed and resample by resample
    (the public comparison of two models: the report and `bench compare` call it).
    None when they share no seed."""
    seeds = sorted(set(a.aucs) & set(b.aucs))
    if not seeds:
        return None
    values = [a.aucs[s] - b.aucs[s] for s in seeds]
    ra, rb = _stacked(a.replicates, seeds), _stacked(b.replicates, seeds)
    replicates = None if ra is None or rb is None or ra.shape != rb.shape else ra - rb
    return combine(values, replicates)


# ---------------------------------------------------------------- choice, correction, power


def best_on_validation(valid_aucs: dict[str, float | None]) -> str | None:
    """The key with the highest validation AUC (the key breaks ties, for stable reports)."""
    have = [(-v, k) for k, v in valid_aucs.items() if v is not None and math.isfinite(v)]
    return min(have)[1] if have else None


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values (None stays None and does not count as a test)."""
    tested = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(tested)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def detectable_difference(se: float, df: float = math.inf, alpha: float = ALPHA,
                          power: float = POWER) -> float:
    """Smallest true difference a two-sided test at `alpha` detects with `power`."""
    return (_t_quantile(1 - alpha / 2, df) + _t_quantile(power, df)) * se
