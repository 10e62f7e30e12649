"""An XGBoost binary-logistic forest rewritten as a LightGBM model file, for lleaves to compile.

lleaves compiles only LightGBM's text format; XGBoost's trees fit it once three differences
are bridged (tests/test_baselines_compiled.py checks the result against XGBoost's predict):
- numeric splits: XGBoost sends float32(x) < t left; LightGBM sends x <= t left. Callers pass
  float32-rounded inputs, and t becomes the float32 just below t, so both tests agree exactly;
  a missing value follows XGBoost's default direction (LightGBM missing type NaN);
- categorical splits: XGBoost lists the categories that go right, LightGBM's bitset those that
  go left, and sends anything else (unlisted, out of range, negative, missing) right. The
  children are swapped, so the listed categories go to XGBoost's right child and the rest to its
  left child. A missing category would go left, so categorical columns must not hold NaN (ours
  hold codes, never NaN);
- the intercept: XGBoost's base score (a probability) becomes logit(base score) added to every
  leaf of the first tree.
"""

from __future__ import annotations

import json
import math

import numpy as np


def _lower_float32(value: float) -> float:
    """The largest float32 strictly below float32(value), as a Python float (exact)."""
    return float(np.nextafter(np.float32(value), np.float32(-np.inf)))


def _tree_block(index: int, tree: dict, bias: float) -> str:
    left, right = tree["left_children"], tree["right_children"]
    internal = [i for i in range(len(left)) if left[i] != -1]
    leaves = [i for i in range(len(left)) if left[i] == -1]
    node_id = {n: k for k, n in enumerate(internal)}
    leaf_id = {n: k for k, n in enumerate(leaves)}

    def child(n: int) -> int:  # LightGBM: >= 0 internal node, < 0 leaf ~index
        return node_id[n] if n in node_id else -(leaf_id[n] + 1)

    categories = {}
    if tree.get("categories_nodes"):
        for n, start, size in zip(tree["categories_nodes"], tree["categories_segments"],
                                  tree["categories_sizes"]):
            categories[n] = tree["categories"][start:start + size]
    split_feature, threshold, decision, lefts, rights = [], [], [], [], []
    boundaries, bitset_words = [0], []
    for n in internal:
        split_feature.append(tree["split_indices"][n])
        if tree["split_type"][n] == 1:  # categorical: bitset of XGBoost's right-going set
            words = np.zeros(max(categories[n], default=0) // 32 + 1, dtype=np.uint64)
            for c in categories[n]:
                words[c // 32] |= np.uint64(1 << (c % 32))
            threshold.append(str(len(boundaries) - 1))
            bitset_words.extend(int(w) for w in words)
            boundaries.append(len(bitset_words))
            decision.append("1")
            lefts.append(child(right[n]))
            rights.append(child(left[n]))
        else:
            threshold.append(repr(_lower_float32(tree["split_conditions"][n])))
            decision.append(str(8 | (2 if tree["default_left"][n] else 0)))  # NaN missing
            lefts.append(child(left[n]))
            rights.append(child(right[n]))
    leaf_values = [repr(float(np.float32(tree["split_conditions"][n])) + bias) for n in leaves]
    lines = [f"Tree={index}", f"num_leaves={len(leaves)}", f"num_cat={len(boundaries) - 1}",
             "split_feature=" + " ".join(map(str, split_feature)),
             "threshold=" + " ".join(threshold), "decision_type=" + " ".join(decision),
             "left_child=" + " ".join(map(str, lefts)),
             "right_child=" + " ".join(map(str, rights)),
             "leaf_value=" + " ".join(leaf_values)]
    if len(boundaries) > 1:
        lines += ["cat_boundaries=" + " ".join(map(str, boundaries)),
                  "cat_threshold=" + " ".join(map(str, bitset_words))]
    lines += ["is_linear=0", "shrinkage=1"]
    return "\n".join(lines)


def lightgbm_model_text(booster, categorical: list[int]) -> str:
    """LightGBM model text (the parts lleaves reads) computing the same P(y=1) as `booster`."""
    model = json.loads(booster.save_raw("json"))["learner"]
    objective = model["objective"]["name"]
    if objective != "binary:logistic":
        raise ValueError(f"only binary:logistic XGBoost models convert, not {objective!r}")
    base_score = float(model["learner_model_param"]["base_score"].strip("[]"))
    bias = math.log(base_score / (1.0 - base_score))
    trees = model["gradient_booster"]["model"]["trees"]
    n_features = int(model["learner_model_param"]["num_feature"])
    infos = ["0:1" if j in set(categorical) else "[-1e300:1e300]" for j in range(n_features)]
    header = ["tree", "version=v4", "num_class=1", "num_tree_per_iteration=1", "label_index=0",
              f"max_feature_idx={n_features - 1}", "objective=binary sigmoid:1",
              "feature_infos=" + " ".join(infos), "tree_sizes=0"]
    if not trees:  # no tree at all: one leaf holding the intercept
        trees = [{"left_children": [-1], "right_children": [-1], "split_conditions": [0.0],
                  "split_indices": [0], "split_type": [0], "default_left": [0]}]
    blocks = [_tree_block(i, t, bias if i == 0 else 0.0) for i, t in enumerate(trees)]
    return ("\n".join(header) + "\n\n" + "\n\n".join(blocks)
            + "\n\nend of trees\n\npandas_categorical:null\n")
