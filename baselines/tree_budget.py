"""The one GBDT budget LightGBM and XGBoost share, so neither library is favoured.

Rounds, early stopping, learning rate, leaves, bins, column sampling, L2 and the minimum
hessian per leaf come from the run's profile (ccp/profiles.py `gbdt_*`). Both libraries grow
leaf-wise to `num_leaves` leaves (XGBoost: grow_policy=lossguide, max_leaves, no depth limit),
bin features into `max_bin` bins, sample `feature_fraction` of the columns per tree, stop when
the validation log loss (or AUC: `gbdt_stopping_metric`) of the model's own task has not
improved for `early_stopping` rounds, and keep the best iteration. Each library's names for
these fields: baselines/lgbm.py, xgb.py.

`aitm` is the LightGBM configuration the AITM paper (KDD 2021) reports for Ali-CCP: learning
rate 0.1, 70 leaves, max_bin 2000, feature fraction 0.9, bagging fraction 0.7 every 5
iterations; what the paper leaves unsaid keeps LightGBM's defaults (no L2, min hessian 1e-3,
20 rows per leaf), and rounds and early stopping are the profile's like every other tree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

CONFIGS = ("default", "aitm")


@dataclass(frozen=True)
class TreeBudget:
    max_rounds: int
    early_stopping: int
    learning_rate: float
    num_leaves: int
    max_bin: int = 255
    feature_fraction: float = 0.5
    bagging_fraction: float = 1.0  # 1.0 = no row sampling
    bagging_freq: int = 0
    lambda_l2: float = 10.0
    min_hessian: float = 1e-3  # LightGBM min_sum_hessian_in_leaf = XGBoost min_child_weight
    min_data_in_leaf: int = 20  # LightGBM only: XGBoost has no row-count limit per leaf
    stopping_metric: str = "logloss"  # validation metric early stopping watches: logloss or auc

    @classmethod
    def from_profile(cls, profile, config: str = "default") -> TreeBudget:
        bagging = getattr(profile, "gbdt_bagging_fraction", 1.0)
        budget = cls(max_rounds=profile.gbdt_max_rounds,
                     early_stopping=profile.gbdt_early_stopping,
                     learning_rate=profile.gbdt_learning_rate,
                     num_leaves=profile.gbdt_num_leaves,
                     max_bin=getattr(profile, "gbdt_max_bin", 255),
                     feature_fraction=getattr(profile, "gbdt_feature_fraction", 0.5),
                     bagging_fraction=bagging,
                     # LightGBM samples rows only with a bagging frequency; every round, as
                     # XGBoost's subsample does.
                     bagging_freq=1 if bagging < 1.0 else 0,
                     lambda_l2=getattr(profile, "gbdt_lambda_l2", 10.0),
                     min_hessian=getattr(profile, "gbdt_min_hessian", 1e-3),
                     stopping_metric=getattr(profile, "gbdt_stopping_metric", "logloss"))
        if budget.stopping_metric not in ("logloss", "auc"):
            raise ValueError(f"gbdt_stopping_metric must be logloss or auc, not "
                             f"{budget.stopping_metric!r}")
        if config == "default":
            return budget
        if config == "aitm":
            return replace(budget, learning_rate=0.1, num_leaves=70, max_bin=2000,
                           feature_fraction=0.9, bagging_fraction=0.7, bagging_freq=5,
                           lambda_l2=0.0, min_hessian=1e-3, min_data_in_leaf=20)
        raise ValueError(f"unknown tree configuration {config!r}; known: {CONFIGS}")

    def as_info(self, fields: tuple[str, ...]) -> dict:
        """`budget_<field>` for the fields a library really receives (its BUDGET_FIELDS)."""
        values = asdict(self)
        return {f"budget_{k}": values[k] for k in fields}
