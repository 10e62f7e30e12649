"""Named run profiles, declared in one place, with the budgets every model family shares.

Same splits, same threads, same seeds for every model of a run; the families read the
budget fields that concern them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Profile:
    name: str
    synth_profile: str  # synthetic data profile used when the data set is "synthetic"
    seeds: tuple[int, ...] = (0,)
    threads: int = 2
    n_bootstrap: int = 200  # request-level bootstrap resamples per AUC
    # GBDT budget, shared by LightGBM and XGBoost.
    gbdt_max_rounds: int = 1000
    gbdt_early_stopping: int = 50
    gbdt_learning_rate: float = 0.05
    gbdt_num_leaves: int = 63
    gbdt_max_bin: int = 255
    gbdt_feature_fraction: float = 0.5  # columns sampled per tree
    gbdt_lambda_l2: float = 10.0
    gbdt_min_hessian: float = 1e-3  # per leaf (LightGBM min_sum_hessian, XGBoost min_child_weight)
    gbdt_stopping_metric: str = "logloss"  # validation metric of early stopping: logloss or auc
    # Rows the trees train and early-stop on, at most: 0 = all; otherwise a uniform sample
    # drawn with the model seed (recorded in the results), so full Ali-CCP fits in memory.
    gbdt_max_train_rows: int = 0
    gbdt_max_valid_rows: int = 0
    # Neural budget, shared by every neural model, counted in optimizer steps (neural/stopping.py):
    # the unit is one epoch of all train rows at neural_batch_size, so that a model trained on
    # clicked rows gets as many steps and checks as one trained on all rows. Validated
    # neural_checks_per_epoch times per unit, the best check's weights kept, stopped after
    # neural_patience checks without improvement or at the cap of neural_max_epochs units.
    neural_max_epochs: int = 8
    neural_checks_per_epoch: int = 4
    neural_patience: int = 2
    neural_batch_size: int = 2048
    # Rows per chunk a neural epoch holds in memory: 0 = automatic (chunks of
    # bench.data.chunks.AUTO_CHUNK_ROWS when the split is memory-mapped or that long),
    # -1 = never chunk, N = chunks of N rows.
    neural_chunk_rows: int = 0
    # Logistic-regression floor.
    linear_max_iter: int = 200

    def with_overrides(self, overrides: dict) -> Profile:
        names = {f.name for f in fields(self)}
        unknown = set(overrides) - names
        if unknown:
            raise ValueError(f"unknown profile setting(s) {sorted(unknown)}; known: "
                             f"{sorted(names)}")
        typed = {k: type(getattr(self, k))(v) if not isinstance(getattr(self, k), tuple)
                 else tuple(int(x) for x in str(v).split(",")) for k, v in overrides.items()}
        return replace(self, **typed)


PROFILES = {
    "tiny": Profile(name="tiny", synth_profile="tiny", n_bootstrap=50, gbdt_max_rounds=60,
                    gbdt_early_stopping=10, gbdt_learning_rate=0.1, gbdt_num_leaves=15,
                    neural_max_epochs=1, neural_batch_size=1024, linear_max_iter=100),
    "small": Profile(name="small", synth_profile="small"),
    "full": Profile(name="full", synth_profile="aliccp", seeds=(0, 1, 2), n_bootstrap=200,
                    gbdt_max_rounds=3000, gbdt_early_stopping=100, neural_max_epochs=5,
                    gbdt_max_train_rows=10_000_000,
                    gbdt_max_valid_rows=2_000_000),
}
DEFAULT_PROFILE = "small"


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known: {sorted(PROFILES)}") from None
