"""Synthetic Ali-CCP with known truth: raw Tianchi-format files plus the true probabilities.

What it writes (see `generate`): the four raw files, byte-compatible with the real release
(`sample_skeleton_{train,test}.csv`, `common_features_{train,test}.csv`), the true P(click) and
P(purchase | click) of every skeleton line (`truth_{train,test}.parquet`), and
`synth_info.json` (parameters, counts, rates, oracle AUCs), written last: a directory without
it is an interrupted generation.

The generative story, in the order the code follows:

* Catalogue. Categories -> shops -> brands -> items, strictly nested, every level with
  Zipf-like popularity (so many items are shown once). Each item has 1..5 intention nodes drawn
  from its category's nodes. Latent vectors are hierarchical: shop = category + noise,
  brand = shop + noise, item = brand + noise. Items carry a price level
  (mostly their brand's tier), shops a quality, items an attractiveness.
* Users. A latent vector, a price sensitivity, an activity level (lognormal: a few heavy users),
  a click and a buying propensity, and the profile fields 121..129 derived from the latent
  traits plus noise (gender, age and group from latent axes, consumption levels from price
  sensitivity, profile category from the nearest of 98 latent centroids).
* Behaviour history. A user has a few interest categories (tilted towards affinity) and makes
  behaviour events: pick an interest (or explore a popular category), a shop in it and an item
  in that shop, both chosen among popularity-drawn candidates with a Gumbel tilt towards the
  user's affinity. The event's category, shop, brand and one of the item's nodes go to the
  lists 109_14, 110_14, 127_14, 150_14. Users are loyal: most events on an interest go to a
  few favourite shops of it. The test snapshot adds later events to the train one.
  Behaviour value = ln(1 + count), written with 6 significant digits (count 1 -> 0.693147).
* Requests and impressions. Each file's requests are shared out among users in proportion to
  their activity (so a few users make many requests), each request with a
  lognormal (heavy-tailed) number of impressions. An impression shows a globally popular item or
  one from a category or shop in the user's history (what a retrieval stage would return).
  Position 301 is one of three values (~62% / 37.5% / 0.75%).
* Truth. logit P(click) = b + affinity + behaviour match (combination weights) + position
  + user and item biases + unobserved request and impression noise. The achievable ceiling is
  this truth with the unobserved noise integrated out (`_Generator.achievable`): the
  best any model can predict from what it observes, written beside the truth.
  logit P(purchase | click) = c + relatedness * affinity + sqrt(1 - relatedness^2) * own factors
  (price sensitivity x price level, shop quality) + user buying bias + unobserved noise.
  Purchases happen only after clicks, apart from a purchase-without-click share (~2.6% of
  purchases, as in the real data) drawn on non-clicked rows. Intercepts b and c are solved on
  the first block so that the rates hit the profile's targets.

Everything runs per block of users (both files are appended to), so memory stays bounded at
any scale; text is built column-wise with pyarrow.compute, never a Python loop per line.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ccp.data import schema
from ccp.data.split import in_test_half

INFO_NAME = "synth_info.json"
# Columns of truth_{split}.parquet: the true probabilities, and the achievable ones (the truth
# with the unobserved noise integrated out: the best any model could predict).
TRUTH_COLUMNS = ("sample_id", "p_click", "p_conversion", "p_click_achievable",
                 "p_conversion_achievable")
SPLITS = schema.RAW_SPLITS  # ("train", "test")

# Ali-CCP's real rates (ALICCP.md, train file), recorded beside raised synthetic rates.
REAL_CTR = 0.0389
REAL_CVR_GIVEN_CLICK = 0.00535
REAL_TRAIN_IMPRESSIONS = 42_300_135
REAL_TEST_IMPRESSIONS = 43_016_840

# Each field owns the id range [base, base + 2^26); the highest base + range stays below 2^31.
FIELD_ID_BASE = {field: (i + 1) << 26 for i, field in enumerate(schema.ALL_FIELDS)}
FIELD_ID_SPAN = 1 << 26

# Small vocabularies of the user profile fields (ALICCP.md).
PROFILE_VOCAB = {"121": 98, "122": 14, "124": 3, "125": 8, "126": 4, "127": 4, "128": 3,
                 "129": 5}

# Skeleton line layout: one slot per possible triple, in writing order.
MAX_NODES = 5
SKELETON_SLOTS = ("205", "206", "207", "216") + ("210",) * MAX_NODES + schema.COMBINATION + (
    "301",)
COMMON_FIELDS = schema.USER_SINGLE + schema.USER_MULTI


@dataclass(frozen=True)
class SynthParams:
    """Every knob of the generator; profiles below override a few."""

    # Size at scale 1 (scale multiplies both).
    train_impressions: int = 400_000
    test_impressions: int = 600_000
    default_scale: float = 1.0
    impressions_per_request_train: float = 58.0
    impressions_per_request_test: float = 58.0
    request_size_sigma: float = 1.1          # lognormal sigma of impressions per request
    max_impressions_per_request: int = 3000
    requests_per_user_train: float = 2.5     # sets the number of users; shared by activity
    requests_per_user_test: float = 3.0
    user_activity_sigma: float = 0.9         # lognormal sigma (mean 1)
    block_impressions: int = 250_000         # users per block chosen to give about this many

    # Catalogue, per impression of both files (categories and nodes scale with sqrt(size)).
    categories: int = 800                    # at scale 1
    nodes_per_category: float = 11.0
    shops_per_impression: float = 0.012
    brands_per_shop: float = 1.3
    items_per_impression: float = 0.09
    category_zipf: float = 1.0
    shop_zipf: float = 0.9
    brand_zipf: float = 0.9
    item_zipf: float = 1.0
    node_count_probs: tuple = (0.15, 0.2, 0.25, 0.2, 0.2)  # P(1..5 intention nodes)

    # Latent space: item = category + shop + brand + own noise (variances below).
    latent_dim: int = 8
    category_var: float = 0.35
    shop_var: float = 0.25
    brand_var: float = 0.15
    item_var: float = 0.25

    # Behaviour history.
    history_events: float = 60.0             # mean events per user in the train snapshot
    history_events_sigma: float = 0.6
    test_extra_events: float = 0.2           # later events in the test snapshot, share of train
    interest_categories: float = 6.0         # mean interests per user
    max_interests: int = 24
    explore_share: float = 0.15              # events on a popular category outside interests
    interest_candidates: int = 12            # popularity-drawn candidates per tilted choice
    shop_candidates: int = 4
    favourite_shops: int = 6                 # per interest category
    shop_loyalty: float = 0.7                # interest events that go to a favourite shop
    item_candidates: int = 3
    history_tilt: float = 2.0                # weight of affinity against Gumbel noise

    # Which items a request shows.
    from_history_category: float = 0.35
    from_history_shop: float = 0.15

    # Position 301.
    position_probs: tuple = (0.62, 0.3725, 0.0075)
    position_logit: tuple = (0.0, -0.35, -0.8)

    # Click truth (logit scale).
    target_ctr: float = 0.05
    affinity_weight: float = 0.35
    match_weights: tuple = (0.05, 0.08, 0.05, 0.03)  # per unit of 508, 509, 702, 853 weight
    user_click_sd: float = 0.25
    item_click_sd: float = 0.25
    request_noise_sd: float = 0.25             # unobserved: one draw per request
    impression_noise_sd: float = 0.3           # unobserved: one draw per impression

    # Conversion truth (logit scale).
    target_cvr: float = 0.09                 # P(purchase | click)
    relatedness: float = 0.5                 # 0: CVR signal unrelated to CTR's, 1: the same
    conversion_signal_weight: float = 0.8
    user_buy_sd: float = 0.35
    conversion_noise_sd: float = 0.4           # unobserved: one draw per impression
    purchase_without_click_share: float = 0.026  # of all purchases (real: 230 / 9,032)

    def __post_init__(self):
        for name in ("node_count_probs", "position_probs"):
            if not math.isclose(sum(getattr(self, name)), 1.0):
                raise ValueError(f"SynthParams.{name} must sum to 1: {getattr(self, name)}")
        if not 0.0 <= self.relatedness <= 1.0:
            raise ValueError(f"SynthParams.relatedness must be in [0, 1]: {self.relatedness}")
        if self.from_history_category + self.from_history_shop > 1.0:
            raise ValueError("SynthParams.from_history_category + from_history_shop > 1")


# tiny: tests, ~20k + 20k lines in a second or two, rates raised so every half has buyers.
# small: the default data; 250k train + 350k test lines so that every model of `run --all`
#   trains three seeds in under 30 minutes on a 2-core machine; rates raised (CTR ~5%,
#   CVR | click ~13%) so the test half still holds > 1,000 conversions; behaviour lists
#   ~120-140 triples per common line instead of the real ~518, so neural training stays fast.
# aliccp: the real rates and shape; scale is the fraction of the real 42.3M + 43.0M lines
#   (default 0.01). Common lines average ~430 triples at scale 0.01, ~520 at 0.1 and ~560 at 1
#   (more shops per category, fewer repeats); skeleton lines ~11.5 triples (real 13.5: with
#   1..5 nodes and single-valued combinations a line holds at most 14).
PROFILES = {
    "tiny": SynthParams(
        train_impressions=20_000, test_impressions=20_000,
        impressions_per_request_train=25.0, impressions_per_request_test=25.0,
        categories=60, shops_per_impression=0.02, items_per_impression=0.15,
        history_events=40.0, target_ctr=0.08, target_cvr=0.15,
        block_impressions=50_000),
    "small": SynthParams(train_impressions=250_000, test_impressions=350_000, target_cvr=0.13),
    "aliccp": SynthParams(
        train_impressions=REAL_TRAIN_IMPRESSIONS, test_impressions=REAL_TEST_IMPRESSIONS,
        default_scale=0.01,
        impressions_per_request_train=57.9, impressions_per_request_test=48.6,
        requests_per_user_train=1.9, requests_per_user_test=2.1,
        categories=8_600, shops_per_impression=0.009, items_per_impression=0.09,
        history_events=360.0, max_interests=40, interest_categories=10.0,
        node_count_probs=(0.05, 0.1, 0.15, 0.25, 0.45),
        target_ctr=REAL_CTR, target_cvr=REAL_CVR_GIVEN_CLICK),
}


def params_for(profile: str) -> SynthParams:
    if profile not in PROFILES:
        raise ValueError(f"unknown synthetic profile {profile!r}; known: {sorted(PROFILES)}")
    return PROFILES[profile]


def profile_params_json(profile: str) -> dict:
    """The profile's parameters as synth_info.json records them."""
    return json.loads(json.dumps(_jsonable(asdict(params_for(profile)))))


def with_overrides(params: SynthParams, overrides: dict | None) -> SynthParams:
    """params with some fields replaced; an unknown field is an error naming the known ones."""
    if not overrides:
        return params
    known = {f.name for f in fields(SynthParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown synthetic parameter(s) {unknown}; known: {sorted(known)}")
    return replace(params, **overrides)


def is_complete(out_dir: str | Path) -> bool:
    """True when a generation finished in out_dir (synth_info.json is written last)."""
    return (Path(out_dir) / INFO_NAME).is_file()


def load_info(out_dir: str | Path) -> dict:
    path = Path(out_dir) / INFO_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; the synthetic data in {out_dir} is incomplete")
    return json.loads(path.read_text())


# ---------------------------------------------------------------- small numeric helpers


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def expected_sigmoid(logit: np.ndarray, sd: float, nodes: int = 40) -> np.ndarray:
    """E[sigmoid(logit + e)] for e ~ Normal(0, sd^2), by Gauss-Hermite quadrature."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-x^2 / 2)
    total = np.zeros(np.shape(logit))
    for xi, wi in zip(x, w / w.sum(), strict=True):
        total += wi * _sigmoid(logit + sd * xi)
    return total


def _zipf_weights(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Zipf-like weights in random order: rank r gets r^-exponent."""
    return (rng.permutation(n) + 1.0) ** -exponent


def _cumulative(weights: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(weights, dtype=np.float64)])


def _pick_in_ranges(rng, cum: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """One index in each [lo, hi), drawn in proportion to weight (cum: cumulative weights)."""
    a, b = cum[lo], cum[hi]
    x = a + rng.random(len(lo)) * (b - a)
    return np.clip(np.searchsorted(cum, x, side="right") - 1, lo, hi - 1)


def _nest(rng, n_children: int, parent_weights: np.ndarray) -> np.ndarray:
    """Parent of each child, sorted, so children of one parent are contiguous; each parent >= 1."""
    n_parents = len(parent_weights)
    extra = rng.choice(n_parents, size=n_children - n_parents,
                       p=parent_weights / parent_weights.sum())
    return np.sort(np.concatenate([np.arange(n_parents), extra]))


def _range_starts(parent: np.ndarray, n_parents: int) -> np.ndarray:
    """Start offsets (length n_parents + 1) of the contiguous children of each parent."""
    return np.searchsorted(parent, np.arange(n_parents + 1))


def _tilted_pick(rng, candidates: np.ndarray, affinity: np.ndarray, tilt: float) -> np.ndarray:
    """Among each row's candidates, the one maximising tilt * affinity + Gumbel noise."""
    score = tilt * affinity + rng.gumbel(size=affinity.shape)
    return candidates[np.arange(len(candidates)), np.argmax(score, axis=1)]


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A bijection of uint64: distinct counters give distinct, random-looking keys."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _hex16(x: np.ndarray) -> np.ndarray:
    """uint64 -> 16 lower-case hex characters (numpy 'S16')."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    by = x.astype(">u8").view(np.uint8).reshape(-1, 8)
    out = np.empty((len(x), 16), dtype=np.uint8)
    out[:, 0::2] = digits[by >> 4]
    out[:, 1::2] = digits[by & 15]
    return out.view("S16").ravel()


def behaviour_value_text(count: int) -> str:
    """The written behaviour weight: ln(1 + count), 6 significant digits, always with a dot."""
    text = f"{math.log1p(count):.6g}"
    return text if ("." in text or "e" in text) else text + ".0"


class _ValueTable:
    """Value strings by index: 0 -> "1.0" (plain id), c >= 1 -> ln(1 + c); grows on demand."""

    def __init__(self):
        self.text = ["1.0"]
        self.weight = [0.0]  # what the truth uses: the written value, 0 when absent

    def ensure(self, max_count: int):
        for c in range(len(self.text), max_count + 1):
            t = behaviour_value_text(c)
            self.text.append(t)
            self.weight.append(float(t))

    def strings(self) -> pa.Array:
        return pa.array(["\x03" + t for t in self.text], pa.string())

    def weights(self) -> np.ndarray:
        return np.asarray(self.weight)


# ---------------------------------------------------------------- text assembly


def _feature_lists(offsets: np.ndarray, field_code: np.ndarray, field_names, ids: np.ndarray,
                   value_idx: np.ndarray, values: _ValueTable) -> pa.Array:
    """One `f\\x02id\\x03v\\x01...` string per line, from triples offsets[i]:offsets[i+1]."""
    fields = pa.array([f + "\x02" for f in field_names], pa.string()).take(
        pa.array(field_code, pa.int32()))
    id_text = pc.cast(pa.array(ids, pa.int64()), pa.string())
    value_text = values.strings().take(pa.array(value_idx, pa.int64()))
    triples = pc.binary_join_element_wise(fields, id_text, value_text, "")
    lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), triples)
    return pc.binary_join(lists, "\x01")


def _text_bytes(columns: list) -> pa.Buffer | bytes:
    """Comma-joined columns, one line each with a trailing newline, as one contiguous buffer."""
    lines = pc.binary_join_element_wise(*columns, ",")
    lines = pc.binary_join_element_wise(lines, "", "\n")
    if len(lines) == 0:
        return b""
    lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1,
                            offset=lines.offset * 4)
    return lines.buffers()[2][offsets[0]:offsets[-1]]


def _int_text(x: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.asarray(x, dtype=np.int64)), pa.string())


# ---------------------------------------------------------------- the generator


@dataclass
class _History:
    """One behaviour field of one snapshot for a block of users: sorted keys lu * n + entity."""

    keys: np.ndarray
    counts: np.ndarray
    n_entities: int
    user_start: np.ndarray  # CSR offsets by local user

    @property
    def entity(self) -> np.ndarray:
        return self.keys % self.n_entities

    def count_of(self, local_user: np.ndarray, entity: np.ndarray) -> np.ndarray:
        """The user's count on that entity, 0 when absent."""
        key = local_user.astype(np.int64) * self.n_entities + entity
        pos = np.searchsorted(self.keys, key)
        pos_ok = np.minimum(pos, len(self.keys) - 1)
        found = (pos < len(self.keys)) & (self.keys[pos_ok] == key)
        return np.where(found, self.counts[pos_ok], 0)


class _Generator:
    def __init__(self, params: SynthParams, seed: int, scale: float):
        self.p = p = params
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.scale = scale
        self.target_train = p.train_impressions * scale
        self.target_test = p.test_impressions * scale
        total = self.target_train + self.target_test
        self.sizes = self._sizes(total)
        self._catalogue()
        self._users()
        self.values = _ValueTable()
        self.click_intercept: float | None = None
        self.conversion_intercept: float | None = None

    # -- sizes and entities

    def _sizes(self, total: float) -> dict:
        p = self.p
        size_ratio = total / (p.train_impressions + p.test_impressions)
        n_cat = max(10, round(p.categories * math.sqrt(size_ratio)))
        n_shop = max(n_cat, round(p.shops_per_impression * total))
        n_brand = max(n_shop, round(p.brands_per_shop * n_shop))
        n_item = max(n_brand, round(p.items_per_impression * total))
        n_node = max(n_cat, round(p.nodes_per_category * n_cat))
        per_user = (p.requests_per_user_train * p.impressions_per_request_train
                    + p.requests_per_user_test * p.impressions_per_request_test)
        n_user = max(10, round(total / per_user))
        sizes = {"categories": n_cat, "shops": n_shop, "brands": n_brand, "items": n_item,
                 "nodes": n_node, "users": n_user}
        if max(sizes.values()) >= FIELD_ID_SPAN:
            raise ValueError(f"scale {self.scale} needs more ids than a field's range: {sizes}")
        return sizes

    def _catalogue(self):
        p, rng, s = self.p, self.rng, self.sizes
        d = p.latent_dim
        cat_w = _zipf_weights(rng, s["categories"], p.category_zipf)
        self.shop_cat = _nest(rng, s["shops"], cat_w)
        shop_w = _zipf_weights(rng, s["shops"], p.shop_zipf)
        self.brand_shop = _nest(rng, s["brands"], shop_w)
        brand_w = _zipf_weights(rng, s["brands"], p.brand_zipf)
        self.item_brand = _nest(rng, s["items"], brand_w)
        self.item_shop = self.brand_shop[self.item_brand]
        self.item_cat = self.shop_cat[self.item_shop]
        self.node_cat = _nest(rng, s["nodes"], cat_w)

        # Popularity: item weights; shops and categories weigh what their items weigh.
        item_w = _zipf_weights(rng, s["items"], p.item_zipf)
        self.item_cum = _cumulative(item_w)
        self.shop_cum = _cumulative(np.bincount(self.item_shop, item_w, s["shops"]))
        self.cat_cum = _cumulative(np.bincount(self.item_cat, item_w, s["categories"]))
        self.cat_item_start = _range_starts(self.item_cat, s["categories"])
        self.shop_item_start = _range_starts(self.item_shop, s["shops"])
        self.cat_shop_start = _range_starts(self.shop_cat, s["categories"])
        node_start = _range_starts(self.node_cat, s["categories"])

        # Intention nodes: a popularity-drawn first node, then its neighbours in the category.
        node_cum = _cumulative(_zipf_weights(rng, s["nodes"], 1.0))
        lo, hi = node_start[self.item_cat], node_start[self.item_cat + 1]
        first = _pick_in_ranges(rng, node_cum, lo, hi)
        k = rng.choice(MAX_NODES, size=s["items"], p=np.asarray(p.node_count_probs)) + 1
        self.item_n_nodes = np.minimum(k, hi - lo)
        j = np.arange(MAX_NODES)
        self.item_nodes = lo[:, None] + (first[:, None] - lo[:, None] + j) % (hi - lo)[:, None]

        # Hierarchical latent vectors.
        def noise(n, var):
            return rng.normal(0.0, math.sqrt(var), (n, d)).astype(np.float32)

        cat_vec = noise(s["categories"], p.category_var)
        shop_vec = cat_vec[self.shop_cat] + noise(s["shops"], p.shop_var)
        brand_vec = shop_vec[self.brand_shop] + noise(s["brands"], p.brand_var)
        self.item_vec = brand_vec[self.item_brand] + noise(s["items"], p.item_var)
        self.shop_vec, self.cat_vec = shop_vec, cat_vec
        self.affinity_sd = math.sqrt(p.category_var + p.shop_var + p.brand_var + p.item_var)

        # Scalars: price level mostly from the brand's tier, shop quality, attractiveness.
        brand_tier = rng.normal(size=s["brands"])
        price = 0.8 * brand_tier[self.item_brand] + 0.6 * rng.normal(size=s["items"])
        self.item_price = price / price.std()
        self.shop_quality = rng.normal(size=s["shops"])
        log_pop = np.log(item_w)
        self.item_bias = p.item_click_sd * (
            0.3 * (log_pop - log_pop.mean()) / log_pop.std() + 0.95 * rng.normal(size=s["items"]))

        # Feature ids: each entity kind gets a random permutation inside its field's range.
        self.ids = {name: rng.permutation(n) for name, n in s.items()}

    def _users(self):
        p, rng, n = self.p, self.rng, self.sizes["users"]
        d = p.latent_dim
        self.user_vec = rng.normal(size=(n, d)).astype(np.float32)
        self.price_sens = rng.normal(size=n)
        sig = p.user_activity_sigma
        self.activity = rng.lognormal(-sig * sig / 2, sig, n)
        self.user_click = rng.normal(0.0, p.user_click_sd, n)
        self.user_buy = rng.normal(0.0, p.user_buy_sd, n)

        # Profile fields, derived from latent traits plus noise.
        u = self.user_vec
        gender = (u[:, 0] + 0.6 * rng.normal(size=n) > 0).astype(np.int64)
        age = np.digitize(u[:, 1] + 0.7 * rng.normal(size=n),
                          [-1.4, -0.8, -0.35, 0.0, 0.35, 0.8, 1.4])
        group = gender * 7 + np.minimum(age, 6)
        gender = np.where(rng.random(n) < 0.03, 2, gender)  # unknown gender
        level1 = np.digitize(-self.price_sens + 0.6 * rng.normal(size=n), [-0.9, 0.0, 0.9])
        level2 = np.digitize(-self.price_sens + 0.9 * rng.normal(size=n), [-0.7, 0.2, 1.1])
        occupation = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
        geography = rng.choice(5, size=n, p=[0.3, 0.25, 0.2, 0.15, 0.1])
        centroids = rng.normal(size=(PROFILE_VOCAB["121"], d)).astype(np.float32)
        profile_cat = np.argmax(u @ centroids.T + rng.gumbel(size=(n, len(centroids))), axis=1)
        self.profile = {"121": profile_cat, "122": group, "124": gender, "125": age,
                        "126": level1, "127": level2, "128": occupation, "129": geography}
        for field, values in self.profile.items():
            assert values.max() < PROFILE_VOCAB[field], field

    # -- per block

    def _shop_in(self, cat: np.ndarray, uvec: np.ndarray) -> np.ndarray:
        """A shop of each category, popularity-drawn candidates tilted towards affinity."""
        p, rng = self.p, self.rng
        lo, hi = self.cat_shop_start[cat], self.cat_shop_start[cat + 1]
        cand = np.stack([_pick_in_ranges(rng, self.shop_cum, lo, hi)
                         for _ in range(p.shop_candidates)], axis=1)
        aff = np.einsum("nd,nmd->nm", uvec, self.shop_vec[cand]) / math.sqrt(p.latent_dim)
        return _tilted_pick(rng, cand, aff, p.history_tilt)

    def _history(self, users: np.ndarray) -> dict[str, dict[str, _History]]:
        """Behaviour lists of a block of users, for the train snapshot and the later test one."""
        p, rng, s = self.p, self.rng, self.sizes
        n = len(users)
        uvec = self.user_vec[users]
        sd = math.sqrt(p.latent_dim)

        # Interest categories: tilted choice among popularity-drawn candidates.
        n_int = np.clip(rng.poisson(p.interest_categories - 1, n) + 1, 1, p.max_interests)
        m = p.interest_candidates
        cand = np.searchsorted(self.cat_cum, rng.random((n, p.max_interests, m))
                               * self.cat_cum[-1], side="right") - 1
        aff = np.einsum("nd,nkmd->nkm", uvec, self.cat_vec[cand]) / sd
        interests = _tilted_pick(rng, cand.reshape(-1, m), aff.reshape(-1, m),
                                 p.history_tilt).reshape(n, p.max_interests)
        f = p.favourite_shops
        favourites = self._shop_in(np.repeat(interests.ravel(), f),
                                   np.repeat(uvec, p.max_interests * f, axis=0))
        favourites = favourites.reshape(n, p.max_interests, f)

        sig = p.history_events_sigma
        n_train = np.maximum(1, np.round(p.history_events * np.sqrt(self.activity[users])
                                         * rng.lognormal(-sig * sig / 2, sig, n))).astype(np.int64)
        n_extra = rng.poisson(p.test_extra_events * n_train)
        n_events = n_train + n_extra
        lu = np.repeat(np.arange(n), n_events)
        later = np.arange(len(lu)) - np.repeat(np.cumsum(n_events) - n_events, n_events) \
            >= np.repeat(n_train, n_events)

        # Category: an interest (skewed to the first ones) or an exploration by popularity.
        slot = np.floor(n_int[lu] * rng.random(len(lu)) ** 2).astype(np.int64)
        cat = interests[lu, slot]
        explore = rng.random(len(lu)) < p.explore_share
        cat[explore] = np.searchsorted(self.cat_cum, rng.random(explore.sum())
                                       * self.cat_cum[-1], side="right") - 1
        # Shop in that category: mostly one of the user's favourite shops of that interest
        # (loyalty keeps list lengths steady as the catalogue grows), else a new tilted pick.
        shop = self._shop_in(cat, uvec[lu])
        loyal = ~explore & (rng.random(len(lu)) < p.shop_loyalty)
        fav = np.floor(p.favourite_shops * rng.random(loyal.sum()) ** 1.5).astype(np.int64)
        shop[loyal] = favourites[lu[loyal], slot[loyal], fav]
        # Item in that shop, tilted towards affinity.
        lo, hi = self.shop_item_start[shop], self.shop_item_start[shop + 1]
        cand = np.stack([_pick_in_ranges(rng, self.item_cum, lo, hi)
                         for _ in range(p.item_candidates)], axis=1)
        aff = np.einsum("nd,nmd->nm", uvec[lu], self.item_vec[cand]) / sd
        item = _tilted_pick(rng, cand, aff, p.history_tilt)
        node = self.item_nodes[item, np.floor(rng.random(len(item))
                                              * self.item_n_nodes[item]).astype(np.int64)]

        events = {"109_14": (cat, s["categories"]), "110_14": (shop, s["shops"]),
                  "127_14": (self.item_brand[item], s["brands"]), "150_14": (node, s["nodes"])}
        out = {}
        for split, keep in (("train", ~later), ("test", None)):
            out[split] = {}
            for field, (entity, n_ent) in events.items():
                key = lu.astype(np.int64) * n_ent + entity
                key = key if keep is None else key[keep]
                keys, counts = np.unique(key, return_counts=True)
                start = np.searchsorted(keys // n_ent, np.arange(n + 1))
                out[split][field] = _History(keys, counts, n_ent, start)
        return out

    def _common_lines(self, users: np.ndarray, hist: dict[str, _History]):
        """Per local user: the common feature_list string and its triple count."""
        n = len(users)
        parts_user, parts_group, parts_field, parts_id, parts_value = [], [], [], [], []
        for f, field in enumerate(schema.USER_SINGLE):
            if field == "101":
                ids = FIELD_ID_BASE[field] + self.ids["users"][users]
            else:
                ids = FIELD_ID_BASE[field] + self.profile[field][users]
            parts_user.append(np.arange(n))
            parts_group.append(np.full(n, f))
            parts_field.append(np.full(n, f))
            parts_id.append(ids)
            parts_value.append(np.zeros(n, np.int64))
        entity_ids = {"109_14": "categories", "110_14": "shops", "127_14": "brands",
                      "150_14": "nodes"}
        for g, field in enumerate(schema.USER_MULTI):
            h = hist[field]
            k = len(h.keys)
            parts_user.append(h.keys // h.n_entities)
            parts_group.append(np.full(k, len(schema.USER_SINGLE) + g))
            parts_field.append(np.full(k, COMMON_FIELDS.index(field)))
            parts_id.append(FIELD_ID_BASE[field] + self.ids[entity_ids[field]][h.entity])
            parts_value.append(h.counts)
        user = np.concatenate(parts_user)
        order = np.argsort(user * len(COMMON_FIELDS) + np.concatenate(parts_group),
                           kind="stable")
        counts = np.bincount(user, minlength=n)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        value_idx = np.concatenate(parts_value)[order]
        self.values.ensure(int(value_idx.max()))
        lists = _feature_lists(offsets, np.concatenate(parts_field)[order], COMMON_FIELDS,
                               np.concatenate(parts_id)[order], value_idx, self.values)
        return lists, counts

    def requests_per_block(self, bounds: np.ndarray) -> dict[str, np.ndarray]:
        """Requests of each split in each block of users: the split's target number of
        requests, shared out in proportion to the blocks' total activity (exact total)."""
        p = self.p
        cum = np.concatenate([[0.0], np.cumsum(self.activity)])[bounds]
        out = {}
        for split, target, per_request in (
                ("train", self.target_train, p.impressions_per_request_train),
                ("test", self.target_test, p.impressions_per_request_test)):
            total = max(1, round(target / per_request))
            out[split] = np.diff(np.round(total * cum / cum[-1]).astype(np.int64))
        return out

    def _requests(self, users: np.ndarray, split: str, n_requests: int):
        """The user of each request (in shuffled order) and its number of impressions."""
        p, rng = self.p, self.rng
        per_request = (p.impressions_per_request_train if split == "train"
                       else p.impressions_per_request_test)
        act = self.activity[users]
        n_req = rng.multinomial(n_requests, act / act.sum())
        req_user = rng.permutation(np.repeat(np.arange(len(users)), n_req))
        sig = p.request_size_sigma
        mu = math.log(max(per_request - 0.5, 0.5)) - sig * sig / 2
        size = 1 + np.floor(rng.lognormal(mu, sig, len(req_user))).astype(np.int64)
        return req_user, np.minimum(size, p.max_impressions_per_request)

    def _impressions(self, users, lu, hist: dict[str, _History]) -> dict:
        """Item shown, position, combination counts and truth logits of each impression."""
        p, rng = self.p, self.rng
        n = len(lu)
        source = rng.random(n)
        from_cat = source < p.from_history_category
        from_shop = (~from_cat) & (source < p.from_history_category + p.from_history_shop)
        item = np.searchsorted(self.item_cum, rng.random(n) * self.item_cum[-1],
                               side="right") - 1
        for mask, field, start in ((from_cat, "109_14", self.cat_item_start),
                                   (from_shop, "110_14", self.shop_item_start)):
            h = hist[field]
            u = lu[mask]
            entry = _pick_in_ranges(rng, _cumulative(h.counts), h.user_start[u],
                                    h.user_start[u + 1])
            ent = h.entity[entry]
            item[mask] = _pick_in_ranges(rng, self.item_cum, start[ent], start[ent + 1])
        position = rng.choice(3, size=n, p=np.asarray(p.position_probs))

        cat, shop, brand = self.item_cat[item], self.item_shop[item], self.item_brand[item]
        nodes = self.item_nodes[item]
        has_node = np.arange(MAX_NODES) < self.item_n_nodes[item][:, None]
        node_counts = np.where(has_node, hist["150_14"].count_of(
            np.repeat(lu, MAX_NODES), nodes.ravel()).reshape(n, MAX_NODES), 0)
        best = np.argmax(node_counts, axis=1)  # 853 carries the item's strongest node
        combo = {
            "508": (cat, hist["109_14"].count_of(lu, cat)),
            "509": (shop, hist["110_14"].count_of(lu, shop)),
            "702": (brand, hist["127_14"].count_of(lu, brand)),
            "853": (nodes[np.arange(n), best], node_counts[np.arange(n), best]),
        }
        return {"item": item, "position": position, "nodes": nodes, "has_node": has_node,
                "combo": combo}

    def _truth_logits(self, users, lu, req, imp) -> tuple[np.ndarray, np.ndarray, tuple]:
        """(logit P(click), logit P(purchase | click), the observable parts of both): the
        observable part is everything but the unobserved noise, intercepts not yet added."""
        p = self.p
        n = len(lu)
        item, user = imp["item"], users[lu]
        request_noise, impression_noise, conversion_noise = self.noise(self.rng, req, n)
        aff = np.einsum("nd,nd->n", self.user_vec[user], self.item_vec[item],
                        dtype=np.float64) / math.sqrt(p.latent_dim) / self.affinity_sd
        self.values.ensure(max(int(c.max(initial=0)) for _, c in imp["combo"].values()))
        weight = self.values.weights()
        match = sum(w * weight[imp["combo"][f][1]]
                    for w, f in zip(p.match_weights, schema.COMBINATION, strict=True))
        seen_click = (p.affinity_weight * aff + match
                      + np.asarray(p.position_logit)[imp["position"]]
                      + self.user_click[user] + self.item_bias[item])
        # Own conversion factors: price-sensitive users buy cheap items; good shops convert.
        own = (-self.price_sens[user] * self.item_price[item]
               + self.shop_quality[self.item_shop[item]]) / math.sqrt(2.0)
        r = p.relatedness
        signal = r * aff + math.sqrt(1.0 - r * r) * own
        seen_conversion = p.conversion_signal_weight * signal + self.user_buy[user]
        return (seen_click + request_noise + impression_noise, seen_conversion + conversion_noise,
                (seen_click, seen_conversion))

    def noise(self, rng, req: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
        """The unobserved logit noise of n impressions (request `req` each): of the click, one
        draw per request and one per impression; of the conversion, one per impression."""
        p = self.p
        request_noise = rng.normal(0.0, p.request_noise_sd, int(req.max(initial=-1)) + 1)[req]
        impression_noise = rng.normal(0.0, p.impression_noise_sd, n)
        return request_noise, impression_noise, rng.normal(0.0, p.conversion_noise_sd, n)

    def achievable(self, seen_click: np.ndarray, seen_conversion: np.ndarray):
        """P(click) and P(purchase | click) given all a model can observe: the truth with the
        noise of `noise` integrated out (the two noises are independent of each other)."""
        p = self.p
        click_sd = math.hypot(p.request_noise_sd, p.impression_noise_sd)
        return (expected_sigmoid(seen_click + self.click_intercept, click_sd),
                expected_sigmoid(seen_conversion + self.conversion_intercept,
                                 p.conversion_noise_sd))

    def _calibrate(self, z_click: np.ndarray, z_conv: np.ndarray):
        """Intercepts so that mean P(click) and mean P(purchase | click) hit the targets."""
        def solve(f, target):
            lo, hi = -30.0, 30.0
            for _ in range(80):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
            return (lo + hi) / 2

        self.click_intercept = solve(lambda b: _sigmoid(z_click + b).mean(), self.p.target_ctr)
        pc_ = _sigmoid(z_click + self.click_intercept)
        self.conversion_intercept = solve(
            lambda c: (pc_ * _sigmoid(z_conv + c)).sum() / pc_.sum(), self.p.target_cvr)

    def block(self, users: np.ndarray, n_requests: dict, counters: dict) -> dict:
        """Both files' lines for a block of users: {split: {...}}; counters carry ids over."""
        p, rng = self.p, self.rng
        hist = self._history(users)
        plan = {split: self._requests(users, split, n_requests[split]) for split in SPLITS}
        per_split = {}
        for split in SPLITS:
            req_user, size = plan[split]
            req = np.repeat(np.arange(len(req_user)), size)
            lu = req_user[req]
            imp = self._impressions(users, lu, hist[split])
            per_split[split] = (req_user, size, req, lu, imp,
                                self._truth_logits(users, lu, req, imp))
        if self.click_intercept is None:
            z = [per_split[s][5] for s in SPLITS]
            self._calibrate(np.concatenate([a for a, _, _ in z]),
                            np.concatenate([b for _, b, _ in z]))

        out = {}
        for split in SPLITS:
            req_user, size, req, lu, imp, (z_click, z_conv, seen) = per_split[split]
            n = len(lu)
            p_click = _sigmoid(z_click + self.click_intercept)
            p_conv = _sigmoid(z_conv + self.conversion_intercept)
            reachable_click, reachable_conv = self.achievable(*seen)
            click = rng.random(n) < p_click
            buy_draw = rng.random(n)
            share = p.purchase_without_click_share
            # Without a click: probability chosen so that P(purchase, no click) is
            # share / (1 - share) * P(click, purchase), i.e. `share` of all purchases.
            no_click = share / (1.0 - share) * p_click * p_conv / (1.0 - p_click)
            purchase = np.where(click, buy_draw < p_conv, buy_draw < no_click)

            first_request = counters[f"{split}_requests"]
            # Keys: a bijection of (seed, split, request counter), so never repeated in a file.
            salt = np.uint64(((self.seed * 2 + SPLITS.index(split)) << 40) % (1 << 64))
            counter = np.arange(first_request, first_request + len(req_user), dtype=np.uint64)
            keys = _hex16(_splitmix64(counter ^ salt))
            counters[f"{split}_requests"] += len(req_user)
            first_line = counters[f"{split}_lines"]
            counters[f"{split}_lines"] += n
            sample_id = np.arange(first_line + 1, first_line + n + 1)

            skeleton, skeleton_triples = self._skeleton_text(sample_id, click, purchase, keys,
                                                             req, imp)
            lists, counts = self._common_lines(users, hist[split])
            key_text = pa.array(keys, pa.binary()).cast(pa.string())
            common = _text_bytes([key_text, _int_text(counts[req_user]),
                                  lists.take(pa.array(req_user, pa.int64()))])
            out[split] = {"skeleton": skeleton, "common": common, "sample_id": sample_id,
                          "p_click": p_click, "p_conversion": p_conv, "click": click,
                          "p_click_achievable": reachable_click,
                          "p_conversion_achievable": reachable_conv, "seen_logits": seen,
                          "purchase": purchase, "keys": keys, "request": req,
                          "requests": len(req_user), "users": np.unique(users[req_user]),
                          "items": imp["item"], "common_triples": int(counts[req_user].sum()),
                          "skeleton_triples": skeleton_triples}
        return out

    def _skeleton_text(self, sample_id, click, purchase, keys, req, imp):
        n = len(req)
        item, nodes = imp["item"], imp["nodes"]
        ids = np.empty((n, len(SKELETON_SLOTS)), np.int64)
        present = np.ones_like(ids, dtype=bool)
        value = np.zeros_like(ids)
        ids[:, 0] = FIELD_ID_BASE["205"] + self.ids["items"][item]
        ids[:, 1] = FIELD_ID_BASE["206"] + self.ids["categories"][self.item_cat[item]]
        ids[:, 2] = FIELD_ID_BASE["207"] + self.ids["shops"][self.item_shop[item]]
        ids[:, 3] = FIELD_ID_BASE["216"] + self.ids["brands"][self.item_brand[item]]
        ids[:, 4:4 + MAX_NODES] = FIELD_ID_BASE["210"] + self.ids["nodes"][nodes]
        present[:, 4:4 + MAX_NODES] = imp["has_node"]
        kinds = {"508": "categories", "509": "shops", "702": "brands", "853": "nodes"}
        for j, field in enumerate(schema.COMBINATION, start=4 + MAX_NODES):
            entity, count = imp["combo"][field]
            ids[:, j] = FIELD_ID_BASE[field] + self.ids[kinds[field]][entity]
            present[:, j] = count > 0
            value[:, j] = count
        ids[:, -1] = FIELD_ID_BASE["301"] + imp["position"]

        slot_field = np.broadcast_to(np.arange(len(SKELETON_SLOTS)), ids.shape)
        counts = present.sum(axis=1)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        lists = _feature_lists(offsets, slot_field[present], SKELETON_SLOTS, ids[present],
                               value[present], self.values)
        digit = pa.array(["0", "1"], pa.string())
        key_text = pa.array(keys, pa.binary()).cast(pa.string()).take(pa.array(req, pa.int64()))
        text = _text_bytes([_int_text(sample_id), digit.take(pa.array(click.astype(np.int8))),
                            digit.take(pa.array(purchase.astype(np.int8))), key_text,
                            _int_text(counts), lists])
        return text, int(counts.sum())


# ---------------------------------------------------------------- generate


def _oracle_aucs(p_click, p_conv, click, purchase, reachable=None) -> dict:
    """AUCs of the true probabilities; with `reachable` = (achievable P(click), achievable
    P(purchase | click)), also the achievable ceiling's, scored the same way."""
    from sklearn.metrics import roc_auc_score

    keep = ~(purchase & ~click)  # the default protocol drops purchase-without-click rows
    pcl, pcv, c, b = p_click[keep], p_conv[keep], click[keep], purchase[keep]

    def auc(label, score):
        return float(roc_auc_score(label, score)) if 0 < label.sum() < len(label) else None

    def expected_auc(score, positive_weight, negative_weight):
        """AUC over the labels' distribution rather than one draw of them: every row counts
        as a positive with weight P(positive) and as a negative with the rest."""
        return float(roc_auc_score(np.r_[np.ones(len(score)), np.zeros(len(score))],
                                   np.r_[score, score],
                                   sample_weight=np.r_[positive_weight, negative_weight]))

    return {"rows": int(keep.sum()), "clicks": int(c.sum()), "conversions": int((c & b).sum()),
            "ctr_auc": auc(c, pcl), "cvr_auc": auc(b[c], pcv[c]),
            "ctcvr_auc": auc(c & b, pcl * pcv),
            # Free of label noise: useful where a half holds few conversions.
            "expected_ctr_auc": expected_auc(pcl, pcl, 1 - pcl),
            "expected_cvr_auc": expected_auc(pcv, pcl * pcv, pcl * (1 - pcv)),
            "expected_ctcvr_auc": expected_auc(pcl * pcv, pcl * pcv, 1 - pcl * pcv),
            **_achievable_aucs(reachable, keep, c, b, auc)}


def _achievable_aucs(reachable, keep, click, purchase, auc) -> dict:
    if reachable is None:
        return {}
    a_click, a_conv = reachable[0][keep], reachable[1][keep]
    return {"achievable_ctr_auc": auc(click, a_click),
            "achievable_cvr_auc": auc(purchase[click], a_conv[click]),
            "achievable_ctcvr_auc": auc(click & purchase, a_click * a_conv)}


def generate(out_dir: str | Path, profile: str = "small", seed: int = 0,
             scale: float | None = None, progress: bool = True,
             overrides: dict | None = None) -> dict:
    """Write a synthetic Ali-CCP data set with known truth into out_dir; return its info dict.

    overrides: SynthParams fields replacing the profile's (e.g. {"target_cvr": 0.00535,
    "relatedness": 0.9} for the regime study); recorded in the info as "overrides". None (the
    default) writes exactly what the profile alone writes.
    """
    params = with_overrides(params_for(profile), overrides)
    scale = params.default_scale if scale is None else float(scale)
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / INFO_NAME).unlink(missing_ok=True)  # from now on the directory reads as incomplete
    for split in SPLITS:  # no stale file of an earlier run may pass for this one's
        for name in (schema.skeleton_name(split), schema.common_name(split),
                     f"truth_{split}.parquet"):
            (out / name).unlink(missing_ok=True)

    gen = _Generator(params, int(seed), scale)
    n_users = gen.sizes["users"]
    per_user = (gen.target_train + gen.target_test) / n_users
    n_blocks = max(1, math.ceil((gen.target_train + gen.target_test) / params.block_impressions))
    bounds = np.linspace(0, n_users, n_blocks + 1).round().astype(np.int64)
    block_requests = gen.requests_per_block(bounds)

    names = {split: {"skeleton": schema.skeleton_name(split), "common": schema.common_name(split),
                     "truth": f"truth_{split}.parquet"} for split in SPLITS}
    partial = {s: {k: out / (v + ".partial") for k, v in d.items()} for s, d in names.items()}
    truth_schema = pa.schema([(name, pa.int64() if name == "sample_id" else pa.float64())
                              for name in TRUTH_COLUMNS])
    files = {s: {k: open(partial[s][k], "wb") for k in ("skeleton", "common")} for s in SPLITS}
    writers = {s: pq.ParquetWriter(partial[s]["truth"], truth_schema) for s in SPLITS}
    counters = {f"{s}_{k}": 0 for s in SPLITS for k in ("requests", "lines")}
    stats = {s: {"clicks": 0, "purchases": 0, "conversions": 0, "purchase_without_click": 0,
                 "common_triples": 0, "skeleton_triples": 0} for s in SPLITS}
    users_seen = {s: [] for s in SPLITS}
    item_counts = {s: np.zeros(gen.sizes["items"], np.int64) for s in SPLITS}
    test_cols = {k: [] for k in (*TRUTH_COLUMNS[1:], "click", "purchase", "half")}
    try:
        for b in range(n_blocks):
            users = np.arange(bounds[b], bounds[b + 1])
            result = gen.block(users, {s: block_requests[s][b] for s in SPLITS}, counters)
            for split in SPLITS:
                r = result[split]
                files[split]["skeleton"].write(r["skeleton"])
                files[split]["common"].write(r["common"])
                writers[split].write_table(pa.table({name: r[name] for name in TRUTH_COLUMNS},
                                                    schema=truth_schema))
                st = stats[split]
                st["clicks"] += int(r["click"].sum())
                st["purchases"] += int(r["purchase"].sum())
                st["conversions"] += int((r["click"] & r["purchase"]).sum())
                st["purchase_without_click"] += int((r["purchase"] & ~r["click"]).sum())
                st["common_triples"] += r["common_triples"]
                st["skeleton_triples"] += r["skeleton_triples"]
                users_seen[split].append(r["users"])
                item_counts[split] += np.bincount(r["items"], minlength=gen.sizes["items"])
                if split == "test":
                    half = in_test_half([k.decode() for k in r["keys"]])[r["request"]]
                    for k in (*TRUTH_COLUMNS[1:], "click", "purchase"):
                        test_cols[k].append(r[k])
                    test_cols["half"].append(half)
            if progress:
                print(f"synth {profile}: block {b + 1}/{n_blocks}, "
                      f"{counters['train_lines']:,} train + {counters['test_lines']:,} test "
                      "lines", file=sys.stderr, flush=True)
    finally:
        for s in SPLITS:
            files[s]["skeleton"].close()
            files[s]["common"].close()
            writers[s].close()

    cols = {k: np.concatenate(v) for k, v in test_cols.items()}
    halves = {}
    for name, mask in (("test_half", cols["half"]), ("validation_half", ~cols["half"])):
        halves[name] = _oracle_aucs(
            cols["p_click"][mask], cols["p_conversion"][mask], cols["click"][mask],
            cols["purchase"][mask],
            (cols["p_click_achievable"][mask], cols["p_conversion_achievable"][mask]))

    counts = {}
    for split in SPLITS:
        lines, st = counters[f"{split}_lines"], stats[split]
        seen = item_counts[split][item_counts[split] > 0]
        counts[split] = {
            "impressions": lines, "requests": counters[f"{split}_requests"],
            "users": int(len(np.unique(np.concatenate(users_seen[split])))),
            "distinct_items": int(len(seen)),
            "items_seen_once_share": float((seen == 1).mean()) if len(seen) else None,
            "clicks": st["clicks"], "purchases": st["purchases"],
            "click_and_purchase": st["conversions"],
            "purchase_without_click": st["purchase_without_click"],
            "ctr": st["clicks"] / max(lines, 1),
            "cvr_given_click": st["conversions"] / max(st["clicks"], 1),
            "impressions_per_request": lines / max(counters[f"{split}_requests"], 1),
            "triples_per_common_line": st["common_triples"]
            / max(counters[f"{split}_requests"], 1),
            "triples_per_skeleton_line": st["skeleton_triples"] / max(lines, 1),
        }
    for split in SPLITS:
        os.replace(partial[split]["skeleton"], out / names[split]["skeleton"])
        os.replace(partial[split]["common"], out / names[split]["common"])
        os.replace(partial[split]["truth"], out / names[split]["truth"])

    rates_raised = not (params.target_ctr == REAL_CTR
                        and params.target_cvr == REAL_CVR_GIVEN_CLICK)
    info = {
        "generator": "ccp.data.synth",
        "profile": profile, "seed": int(seed), "scale": scale,
        **({"overrides": _jsonable(dict(overrides))} if overrides else {}),
        "params": _jsonable(asdict(params)),
        "derived": {"sizes": gen.sizes, "blocks": n_blocks,
                    "expected_impressions_per_user": per_user,
                    "click_intercept": gen.click_intercept,
                    "conversion_intercept": gen.conversion_intercept},
        "rates_raised": rates_raised,
        "real_aliccp_rates": {"ctr": REAL_CTR, "cvr_given_click": REAL_CVR_GIVEN_CLICK},
        "counts": counts,
        "oracle": {**halves,
                   "note": "AUCs of the true probabilities on the official test file's halves "
                           "(ccp.data.split.in_test_half); purchase-without-click rows "
                           "dropped; CVR on clicked rows only; CTCVR = p_click * p_conversion "
                           "against click & purchase on all rows. expected_*: the same AUCs "
                           "averaged over the label draw (each row a positive with weight "
                           "P(label) and a negative with the rest; CVR rows weighted by "
                           "p_click). achievable_*: the same AUCs of the achievable ceiling, "
                           "the truth with the unobserved request, impression and conversion "
                           "noise integrated out (what a model that learnt everything it can "
                           "observe would predict)."},
        "format": {
            "behaviour_value": "ln(1 + count), 6 significant digits (count 1 -> 0.693147); "
                               "combination fields 508/509/702/853 carry the user's value on "
                               "the item's category/shop/brand/strongest node",
            "plain_value": "1.0",
            "field_id_base": FIELD_ID_BASE, "field_id_span": FIELD_ID_SPAN,
            "files": {s: names[s] for s in SPLITS},
        },
    }
    tmp = out / (INFO_NAME + ".partial")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / INFO_NAME)
    return info


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

