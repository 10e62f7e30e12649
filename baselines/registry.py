"""Non-neural models. Names are `baselines/<name>`; classes are imported only when built."""

from baselines.tree_libraries import LIBRARIES
from ccp.model import ModelSpec

TREES = "baselines.trees:TreeModel"
TREE_MODES = {
    "ctr": "click on all impressions; pCVR = train CVR prior",
    "cvr": "purchase on clicked impressions only; pCTR = train CTR prior",
    "ctcvr": "click-and-purchase on all impressions, directly",
    "ctr_x_cvr": "pCTCVR = pCTR x pCVR from the ctr and cvr trees",
}

SPECS = [
    ModelSpec("constant", "baselines", "baselines.constant:ConstantPrior",
              "training prior of each task for every row (AUC 0.5 floor)", group="floor",
              untuned_why="nothing to tune: the train rates are its only parameters"),
    ModelSpec("logreg", "baselines", "baselines.logreg:LogisticFloor",
              "logistic regression on one-hot codes and dense features, one per task (floor)",
              group="linear"),
]
SPECS += [ModelSpec(f"{library.short}_{mode}", "baselines", TREES, f"{library.name}: {how}",
                    group="GBDT", params={"library": library.name, "mode": mode})
          for library in LIBRARIES for mode, how in TREE_MODES.items()]
# The AITM paper's LightGBM configuration (KDD 2021): its CTR and CTCVR trees, and the same
# configuration for the CTR x CVR pair, to compare with our defaults on every task.
SPECS += [ModelSpec(f"lgbm_aitm_{mode}", "baselines", TREES,
                    f"lightgbm, AITM paper's configuration: {TREE_MODES[mode]}", group="GBDT",
                    params={"library": "lightgbm", "mode": mode, "config": "aitm"},
                    untuned_why="a published configuration, kept as the paper reports it "
                                f"(its tuned counterpart is lgbm_{mode})")
          for mode in ("ctcvr", "ctr_x_cvr")]
# One forest for two tasks: XGBoost's multi-output trees (baselines/xgb_multi.py).
SPECS.append(ModelSpec("xgb_multi", "baselines", "baselines.xgb_multi:XgbMultiOutput",
                       "xgboost: one forest, leaves hold (click, click-and-purchase) "
                       "(multi_output_tree); pCVR = pCTCVR / pCTR", group="GBDT"))
