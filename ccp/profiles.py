"""Named run profiles, declared in one place, with the budgets every model family shares.

Same splits, same threads, same seeds for every model of a run; the families read the
budget fields that concern them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ccp.ranges import apply_overrides, check_fields, setting


@dataclass(frozen=True)
class Profile:
    name: str
    synth_profile: str  # synthetic data profile used when the data set is "synthetic"
    seeds: tuple[int, ...] = setting((0,), low=0, high=2**32 - 1, nonempty=True)
    threads: int = setting(2, low=1)
    # Unit-level bootstrap resamples per AUC (ccp.stats' unit).
    n_bootstrap: int = setting(200, low=0, note="0 = no interval")
    # Train rows every model trains on, at most: 0 = all; otherwise the same whole requests for
    # every family, model and seed (ccp.data.split.capped_rows; `train_rows` in each record).
    max_train_rows: int = setting(0, low=0, note="0 = all")
    # GBDT budget, shared by LightGBM and XGBoost.
    gbdt_max_rounds: int = setting(1000, low=1)
    gbdt_early_stopping: int = setting(50, low=1)
    gbdt_learning_rate: float = setting(0.05, low=0, low_open=True)
    gbdt_num_leaves: int = setting(63, low=2)
    gbdt_max_bin: int = setting(255, low=2)
    gbdt_feature_fraction: float = setting(0.5, low=0, low_open=True, high=1)  # per tree
    # Rows sampled per round (1.0 = no row sampling).
    gbdt_bagging_fraction: float = setting(1.0, low=0, low_open=True, high=1)
    gbdt_lambda_l2: float = setting(10.0, low=0)
    # Per leaf (LightGBM min_sum_hessian, XGBoost min_child_weight).
    gbdt_min_hessian: float = setting(1e-3, low=0)
    # Validation metric of early stopping.
    gbdt_stopping_metric: str = setting("logloss", choices=("logloss", "auc"))
    # Neural budget, shared by every neural model, counted in optimizer steps (neural/stopping.py):
    # the unit is one epoch of all train rows at neural_batch_size, so that a model trained on
    # clicked rows gets as many steps and checks as one trained on all rows. Validated
    # neural_checks_per_epoch times per unit, the best check's weights kept, stopped after
    # neural_patience checks without improvement or at the cap of neural_max_epochs units.
    neural_max_epochs: int = setting(8, low=1)
    # Floor on the unit's rows (0 = none): a small train set's budget counted as an epoch of
    # this many rows (neural/stopping.py); the regime study's small sizes use it.
    neural_min_epoch_rows: int = setting(0, low=0)
    neural_checks_per_epoch: int = setting(4, low=1)
    neural_patience: int = setting(2, low=1)
    neural_batch_size: int = setting(2048, low=1)
    # Share of the unclicked validation rows a check scores (every clicked row is scored, the
    # kept unclicked ones weighted by 1/share): CTR and CTCVR AUCs stay unbiased and as precise
    # as their ~20x rarer positives allow, at a third of the cost of scoring every row. The
    # `valid` records are always scored on every row.
    neural_check_unclicked: float = setting(0.25, low=0, low_open=True, high=1)
    # Rows per chunk a neural epoch holds in memory: 0 = automatic (chunks of
    # ccp.data.chunks.AUTO_CHUNK_ROWS when the split is memory-mapped or that long),
    # -1 = never chunk, N = chunks of N rows.
    neural_chunk_rows: int = setting(0, low=-1, note="-1 = never chunk, 0 = automatic")
    # Logistic-regression floor.
    linear_max_iter: int = setting(200, low=1)
    # (model, seed) fits `bench run` runs at once, sharing `threads` (bench/run_jobs.py): two
    # 1-thread fits of these small networks keep 2 cores busier than one 2-thread fit.
    jobs: int = setting(1, low=1)

    def __post_init__(self):
        check_fields(self)  # a named profile out of range fails at import, not mid-run

    def with_overrides(self, overrides: dict) -> Profile:
        """This profile with `overrides` (text as --set gives it, or values) converted to each
        field's type and checked against its declared range."""
        return replace(self, **apply_overrides(self, overrides, "profile setting"))


PROFILES = {
    "tiny": Profile(name="tiny", synth_profile="tiny", n_bootstrap=50, gbdt_max_rounds=60,
                    gbdt_early_stopping=10, gbdt_learning_rate=0.1, gbdt_num_leaves=15,
                    neural_max_epochs=1, neural_batch_size=1024, neural_check_unclicked=1.0,
                    linear_max_iter=100),
    # Three seeds: every interval and test includes training variance (ccp.stats).
    "small": Profile(name="small", synth_profile="small", seeds=(0, 1, 2), jobs=2),
    "full": Profile(name="full", synth_profile="aliccp", seeds=(0, 1, 2), n_bootstrap=200,
                    gbdt_max_rounds=3000, gbdt_early_stopping=100, neural_max_epochs=5,
                    neural_patience=2),
}
DEFAULT_PROFILE = "small"


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known: {sorted(PROFILES)}") from None
