"""The declared search spaces of the non-neural models (`python -m bench tune`).

Trees (LightGBM and XGBoost alike, through the shared budget of baselines/tree_budget.py):
learning rate, leaves, minimum hessian per leaf (XGBoost's min_child_weight), column and row
sampling, L2, and the feature encoding (baselines/tree_features.py). Rounds and early stopping
stay the profile's: the search changes how a forest learns, not how long it may. The ranges
hold each default (ccp/profiles.py), which is always the study's first trial.
The logistic floor: its inverse regularisation strength C.
"""

from __future__ import annotations

from baselines.tree_features import ENCODINGS
from ccp.search_space import Param

TREES = (
    Param("gbdt_learning_rate", "profile", 0.01, 0.3, log=True),
    Param("gbdt_num_leaves", "profile", 7, 255, log=True, integer=True),
    Param("gbdt_min_hessian", "profile", 1e-3, 10.0, log=True),
    Param("gbdt_feature_fraction", "profile", 0.3, 1.0),
    Param("gbdt_bagging_fraction", "profile", 0.5, 1.0),
    Param("gbdt_lambda_l2", "profile", 1e-2, 100.0, log=True),
    Param("encoding", "model", choices=ENCODINGS),
)
LOGREG = (Param("C", "model", 1e-3, 100.0, log=True),)


def space_for(spec) -> tuple[Param, ...]:
    if spec.target in ("baselines.trees:TreeModel", "baselines.xgb_multi:XgbMultiOutput"):
        return TREES  # the multi-output forest takes the same budget and encodings
    if spec.target == "baselines.logreg:LogisticFloor":
        return LOGREG
    raise ValueError(f"{spec.key}: no search space declared in baselines/search_space.py; "
                     "declare one, or say on its spec why it has none (untuned_why)")
