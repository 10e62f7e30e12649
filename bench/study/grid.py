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
# The best loss-balanced multi-task model, chosen on validation: the highest mean validation
# AUC of its default configuration (the one the study runs) among the registered
# loss-balancing models, in the committed tuned file of the default data (trial 0 of each
# study; tests/test_study.py checks the choice against that file). Measured: mmoe_pcgrad
# 0.66876, mmoe_gradnorm 0.66866, mmoe_uncertainty 0.66788 (tuned: 0.6750, 0.6744, 0.6713).
BEST_LOSS_BALANCED = "neural/mmoe_pcgrad"
DEFAULT_MODELS = ("baselines/lgbm_ctr_x_cvr", "neural/dnn_ctr_x_cvr", "neural/esmm",
                  "neural/mmoe", "neural/ple", "neural/aitm", "neural/escm2_dr",
                  BEST_LOSS_BALANCED)


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


_DEFAULT_CVR = PROFILES["small"].target_cvr  # the synthetic default's raised rate

GRIDS = {
    # ≤ 60 min on the 2-core machine with --jobs 2 (README, "Regime study": measured). Every
    # default model; sizes 10x apart, all below the small train file's 258k rows. A neural
    # budget unit of at least 50,000 rows (neural/stopping.py): 2,000 rows are one step per
    # epoch at batch 2,048, so without it a network would stop after 2 steps.
    "quick": Grid("quick", "small", "small", cvr=(_DEFAULT_CVR, REAL_CVR_GIVEN_CLICK),
                  relatedness=(0.1, 0.9), train_rows=(2_000, 20_000, 200_000),
                  seeds=(0, 1, 2),
                  budgets=(("neural_max_epochs", "2"), ("neural_min_epoch_rows", "50000"),
                           ("n_bootstrap", "100"))),
    "full": Grid("full", "small", "small",
                 cvr=(_DEFAULT_CVR, 0.03, 0.01, REAL_CVR_GIVEN_CLICK),
                 relatedness=(0.0, 0.3, 0.6, 0.9), train_rows=(2_000, 20_000, 200_000),
                 seeds=(0, 1, 2), budgets=(("neural_min_epoch_rows", "50000"),)),
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
