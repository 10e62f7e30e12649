"""The study's grids: which generator settings and train sizes, which models, budgets, seeds.

A grid point is (conversion rate given click, relatedness, train rows). The data of one
(rate, relatedness) pair is generated once and shared by its train sizes: the smaller sizes
train on whole-request subsets of the same train file (the profile's max_train_rows,
ccp.data.split.capped_rows) and every size is scored on the same test rows, so the
comparison across sizes is paired too.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccp.data.synth import PROFILES, REAL_CVR_GIVEN_CLICK

# The reference every MTL model is compared with, and the default model set (issue 17).
REFERENCE = "baselines/lgbm_ctr_x_cvr"
DEFAULT_MODELS = ("baselines/lgbm_ctr_x_cvr", "neural/dnn_ctr_x_cvr", "neural/esmm",
                  "neural/mmoe", "neural/ple", "neural/aitm", "neural/escm2_dr")


@dataclass(frozen=True)
class Grid:
    name: str
    synth_profile: str          # the generator profile whose other knobs stay at default
    run_profile: str            # ccp/profiles.py budgets
    cvr: tuple[float, ...]      # target P(purchase | click)
    relatedness: tuple[float, ...]
    train_rows: tuple[int, ...]  # max_train_rows per point (capped at the train file)
    seeds: tuple[int, ...]
    models: tuple[str, ...] = DEFAULT_MODELS
    budgets: tuple[tuple[str, str], ...] = ()  # profile --set pairs
    note: str = ""

    def points(self) -> list[dict]:
        return [{"cvr": c, "relatedness": r, "train_rows": n}
                for c in self.cvr for r in self.relatedness for n in self.train_rows]


def data_name(cvr: float, relatedness: float) -> str:
    return f"cvr{cvr:g}-rel{relatedness:g}"


def point_name(point: dict) -> str:
    return f"{data_name(point['cvr'], point['relatedness'])}-n{point['train_rows']}"


_DEFAULT_CVR = PROFILES["small"].target_cvr  # 0.09, the synthetic default's raised rate
QUICK_MODELS = ("baselines/lgbm_ctr_x_cvr", "neural/esmm", "neural/mmoe")

GRIDS = {
    # ≤ 60 min on the 2-core machine (README, "Regime study", says how it was estimated).
    "quick": Grid("quick", "small", "small", cvr=(_DEFAULT_CVR, REAL_CVR_GIVEN_CLICK),
                  relatedness=(0.1, 0.9), train_rows=(4_000, 40_000, 400_000),
                  seeds=(0, 1, 2), models=QUICK_MODELS,
                  budgets=(("neural_max_epochs", "2"), ("n_bootstrap", "100"))),
    "full": Grid("full", "small", "small",
                 cvr=(_DEFAULT_CVR, 0.03, 0.01, REAL_CVR_GIVEN_CLICK),
                 relatedness=(0.0, 0.3, 0.6, 0.9), train_rows=(4_000, 40_000, 400_000),
                 seeds=(0, 1, 2)),
    # Seconds: tests and smoke checks only; its numbers mean nothing.
    "mini": Grid("mini", "tiny", "tiny", cvr=(0.15,), relatedness=(0.9,),
                 train_rows=(5_000, 20_000), seeds=(0,),
                 models=("baselines/constant", REFERENCE),
                 budgets=(("n_bootstrap", "20"),)),
}


def get_grid(name: str) -> Grid:
    try:
        return GRIDS[name]
    except KeyError:
        raise ValueError(f"unknown --grid {name!r}; known: {sorted(GRIDS)}") from None
