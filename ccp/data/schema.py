"""Ali-CCP field layout, shared by every reader, the generator and the encoders.

The raw Tianchi files carry 23 fields as ``field \\x02 feature_id \\x03 value`` triples.
Which file a field lives in decides whether it is a request-level (user) feature or an
impression-level (item, combination, context) feature; the layout below mirrors ALICCP.md.
"""

from __future__ import annotations

# Request level: `common_features_*.csv`.
USER_SINGLE = ("101", "121", "122", "124", "125", "126", "127", "128", "129")
USER_MULTI = ("109_14", "110_14", "127_14", "150_14")
# Impression level: `sample_skeleton_*.csv`.
ITEM_SINGLE = ("205", "206", "207", "216")
ITEM_MULTI = ("210",)
COMBINATION = ("508", "509", "702", "853")
CONTEXT = ("301",)

# Single-valued impression fields, in the column order of `Split.item_codes`.
IMPRESSION_SINGLE = ITEM_SINGLE + COMBINATION + CONTEXT
# All single-valued fields and all multi-valued fields.
SINGLE_FIELDS = USER_SINGLE + IMPRESSION_SINGLE
MULTI_FIELDS = USER_MULTI + ITEM_MULTI
ALL_FIELDS = SINGLE_FIELDS + MULTI_FIELDS
assert len(ALL_FIELDS) == 23

# Which behaviour field each combination field crosses (ALICCP.md: 508 = 109_14 x 206, ...).
COMBINATION_OF = {"508": ("109_14", "206"), "509": ("110_14", "207"),
                  "702": ("127_14", "216"), "853": ("150_14", "210")}

# Column order of the common processed CSV form (torch-rechub's layout, the shared sample).
PROCESSED_SPARSE = ("101", "121", "122", "124", "125", "126", "127", "128", "129",
                    "205", "206", "207", "210", "216", "508", "509", "702", "853", "301",
                    "109_14", "110_14", "127_14", "150_14")
PROCESSED_DENSE = ("D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853")

# Dense features every encoder derives (scaled on train only):
#   the four combination values (the user's behaviour weight on this item's category/shop/...),
#   each behaviour list's mean weight, and each behaviour list's log1p length.
DENSE_FEATURES = (
    tuple(f"{f}_value" for f in COMBINATION)
    + tuple(f"{f}_mean_weight" for f in USER_MULTI)
    + tuple(f"{f}_log_len" for f in USER_MULTI)
)

# Reserved codes of every vocabulary: 0 = field absent on this line, 1 = rare or unseen id.
CODE_MISSING = 0
CODE_RARE = 1
FIRST_CODE = 2

# Raw file names, per split of the official release.
RAW_SPLITS = ("train", "test")


def skeleton_name(split: str) -> str:
    return f"sample_skeleton_{split}.csv"


def common_name(split: str) -> str:
    return f"common_features_{split}.csv"


# ---- The Parquet cache written by the raw reader (stage 1: raw ids, nothing fitted) ----
# skeleton_{split}.parquet, one row per impression, in file order:
#   line int64 (1-based line in the raw file), sample_id int64, click int8, purchase int8,
#   request_key string,
#   for F in IMPRESSION_SINGLE: F int64 (feature id, null if absent)
#   for F in COMBINATION:       F_value float32 (null if absent)
#   for F in ITEM_MULTI:        F list<int64>, F_value list<float32> (empty list if absent)
# common_{split}.parquet, one row per request context:
#   line int64, request_key string,
#   for F in USER_SINGLE: F int64 (null if absent)
#   for F in USER_MULTI:  F list<int64>, F_value list<float32>
SKELETON_BASE_COLUMNS = ("line", "sample_id", "click", "purchase", "request_key")
COMMON_BASE_COLUMNS = ("line", "request_key")
