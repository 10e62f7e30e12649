"""The synthetic Ali-CCP generator: raw format, determinism, labels, truth and oracle AUCs."""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

from ccp.data import schema, synth
from ccp.data import split as split_rule

RAW_FILES = ("sample_skeleton_train.csv", "sample_skeleton_test.csv",
             "common_features_train.csv", "common_features_test.csv")
ALL_FILES = RAW_FILES + ("truth_train.parquet", "truth_test.parquet", synth.INFO_NAME)
HEX16 = re.compile(r"[0-9a-f]{16}")

# Tiny has ~100 conversions per half, so its CVR oracle AUC wanders by a few points;
# its bands are looser than the small profile's (CTR 0.66-0.76, CVR 0.68-0.80).
TINY_CTR_BAND = (0.62, 0.80)
TINY_CVR_BAND = (0.60, 0.88)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "tiny"
    info = synth.generate(out, "tiny", seed=0, progress=False)
    return out, info


def _triples(feature_list: str):
    out = []
    for triple in feature_list.split("\x01"):
        field, rest = triple.split("\x02")
        feature_id, value = rest.split("\x03")
        out.append((field, int(feature_id), value))
    return out


def _read_skeleton(path):
    rows = []
    for line in path.read_text().splitlines():
        cols = line.split(",")
        assert len(cols) == 6, f"{path}: {len(cols)} columns in {line[:80]!r}"
        sample_id, click, purchase, key, feature_num, feature_list = cols
        triples = _triples(feature_list)
        assert int(feature_num) == len(triples)
        rows.append((int(sample_id), int(click), int(purchase), key, triples))
    return rows


def _read_common(path):
    rows = {}
    for line in path.read_text().splitlines():
        cols = line.split(",")
        assert len(cols) == 3, f"{path}: {len(cols)} columns in {line[:80]!r}"
        key, feature_num, feature_list = cols
        triples = _triples(feature_list)
        assert int(feature_num) == len(triples)
        assert key not in rows, f"request key {key} repeated in {path}"
        rows[key] = triples
    return rows


def _offset(field: str, feature_id: int) -> int:
    """Entity index behind a feature id (each field has its own id range)."""
    offset = feature_id - synth.FIELD_ID_BASE[field]
    assert 0 <= offset < synth.FIELD_ID_SPAN, (field, feature_id)
    return offset


def test_same_seed_same_bytes_other_seed_other_bytes(tiny, tmp_path):
    out, _ = tiny
    again = tmp_path / "again"
    synth.generate(again, "tiny", seed=0, progress=False)
    for name in ALL_FILES:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    other = tmp_path / "other"
    synth.generate(other, "tiny", seed=1, progress=False)
    for name in RAW_FILES:
        assert (out / name).read_bytes() != (other / name).read_bytes(), name


@pytest.mark.parametrize("split", ["train", "test"])
def test_raw_format(tiny, split):
    out, info = tiny
    skeleton = _read_skeleton(out / schema.skeleton_name(split))
    common = _read_common(out / schema.common_name(split))
    assert len(skeleton) == info["counts"][split]["impressions"]
    assert len(common) == info["counts"][split]["requests"]
    assert [r[0] for r in skeleton] == list(range(1, len(skeleton) + 1))

    impression_fields = set(schema.ITEM_SINGLE + schema.ITEM_MULTI + schema.COMBINATION
                            + schema.CONTEXT)
    user_fields = set(schema.USER_SINGLE + schema.USER_MULTI)
    for _, click, purchase, key, triples in skeleton:
        assert click in (0, 1) and purchase in (0, 1)
        assert HEX16.fullmatch(key)
        fields = Counter(f for f, _, _ in triples)
        assert set(fields) <= impression_fields
        for f in schema.ITEM_SINGLE + schema.CONTEXT:
            assert fields[f] == 1, f
        assert 1 <= fields["210"] <= 5
        assert all(fields[f] <= 1 for f in schema.COMBINATION)
        for f, feature_id, value in triples:
            _offset(f, feature_id)
            assert feature_id < 2**31
            if f not in schema.COMBINATION:
                assert value == "1.0"
    for triples in common.values():
        fields = Counter(f for f, _, _ in triples)
        assert set(fields) <= user_fields
        assert all(fields[f] == 1 for f in schema.USER_SINGLE)
        for f, feature_id, value in triples:
            offset = _offset(f, feature_id)
            if f in synth.PROFILE_VOCAB:
                assert offset < synth.PROFILE_VOCAB[f]
            if f in schema.USER_SINGLE:
                assert value == "1.0"
            else:  # ln(1 + count) for a whole count >= 1
                count = math.exp(float(value)) - 1
                assert count >= 0.999 and abs(count - round(count)) < 1e-3 * count, value

    # Skeleton lines come in one contiguous run per request key, each with a common line.
    runs = [key for i, (_, _, _, key, _) in enumerate(skeleton)
            if i == 0 or key != skeleton[i - 1][3]]
    assert len(runs) == len(set(runs))
    assert set(runs) <= set(common)


def test_combination_fields_match_the_behaviour_lists(tiny):
    """508/509/702/853 appear exactly when the user has behaviour on the item's entity,
    with that behaviour's value."""
    out, _ = tiny
    common = _read_common(out / schema.common_name("test"))
    behaviour = {}
    for key, triples in common.items():
        behaviour[key] = {(f, _offset(f, i)): v for f, i, v in triples
                          if f in schema.USER_MULTI}
    present = Counter()
    for _, _, _, key, triples in _read_skeleton(out / schema.skeleton_name("test")):
        user = behaviour[key]
        by_field = {}
        for f, feature_id, value in triples:
            by_field.setdefault(f, []).append((_offset(f, feature_id), value))
        for combo, (list_field, item_field) in schema.COMBINATION_OF.items():
            item_entities = [o for o, _ in by_field[item_field]]
            held = [user[(list_field, o)] for o in item_entities if (list_field, o) in user]
            if combo in by_field:
                (offset, value), = by_field[combo]
                present[combo] += 1
                assert offset in item_entities
                assert value == user[(list_field, offset)]
                assert float(value) == max(float(v) for v in held)
            else:
                assert not held, (combo, key)
    assert all(present[c] > 0 for c in schema.COMBINATION)


def _labels_and_truth(out, split):
    rows = _read_skeleton(out / schema.skeleton_name(split))
    truth = pq.read_table(out / f"truth_{split}.parquet").to_pydict()
    assert truth["sample_id"] == [r[0] for r in rows]
    return (np.array([r[1] for r in rows], bool), np.array([r[2] for r in rows], bool),
            [r[3] for r in rows], np.array(truth["p_click"]), np.array(truth["p_conversion"]))


@pytest.mark.parametrize("split", ["train", "test"])
def test_labels_and_truth(tiny, split):
    out, info = tiny
    click, purchase, _, p_click, p_conv = _labels_and_truth(out, split)
    counts = info["counts"][split]
    assert counts["clicks"] == click.sum() and counts["purchases"] == purchase.sum()
    assert ((p_click > 0) & (p_click < 1) & (p_conv > 0) & (p_conv < 1)).all()
    without_click = int((purchase & ~click).sum())
    assert counts["purchase_without_click"] == without_click
    assert without_click <= 0.1 * purchase.sum()  # ~2.6% expected
    assert (click & purchase).sum() > 0
    # Labels follow the truth: clicked rows have a higher mean p_click, buyers a higher p_conv.
    assert p_click[click].mean() > 1.2 * p_click[~click].mean()
    assert p_conv[click & purchase].mean() > p_conv[click & ~purchase].mean()
    assert abs(p_click.mean() - click.mean()) < 0.2 * click.mean()


def test_oracle_aucs_recomputed_from_the_files(tiny):
    from sklearn.metrics import roc_auc_score

    out, info = tiny
    click, purchase, keys, p_click, p_conv = _labels_and_truth(out, "test")
    unique_keys = list(dict.fromkeys(keys))
    half_of_key = dict(zip(unique_keys, split_rule.in_test_half(unique_keys), strict=True))
    in_test = np.array([half_of_key[k] for k in keys])
    keep = ~(purchase & ~click)
    for name, mask in (("test_half", in_test & keep), ("validation_half", ~in_test & keep)):
        c, b, pc_, pv = click[mask], purchase[mask], p_click[mask], p_conv[mask]
        assert c.sum() > 0 and (c & b).sum() > 0, name
        oracle = info["oracle"][name]
        assert oracle["ctr_auc"] == pytest.approx(roc_auc_score(c, pc_), abs=1e-12)
        assert oracle["cvr_auc"] == pytest.approx(roc_auc_score(b[c], pv[c]), abs=1e-12)
        assert oracle["ctcvr_auc"] == pytest.approx(roc_auc_score(c & b, pc_ * pv), abs=1e-12)
        assert TINY_CTR_BAND[0] <= oracle["ctr_auc"] <= TINY_CTR_BAND[1], oracle
        assert TINY_CVR_BAND[0] <= oracle["cvr_auc"] <= TINY_CVR_BAND[1], oracle
        assert TINY_CTR_BAND[0] <= oracle["expected_ctr_auc"] <= TINY_CTR_BAND[1], oracle
        assert TINY_CVR_BAND[0] <= oracle["expected_cvr_auc"] <= TINY_CVR_BAND[1], oracle
        assert oracle["ctr_auc"] == pytest.approx(oracle["expected_ctr_auc"], abs=0.05)


def test_expected_auc_is_the_mean_over_label_draws():
    """Brute force over all pairs (a row paired with itself counts as a tie)."""
    rng = np.random.default_rng(5)
    p_click, p_conv = rng.uniform(0.01, 0.6, 150), rng.uniform(0.01, 0.6, 150)
    p_conv[:10] = p_conv[10]  # ties
    click = np.r_[np.ones(75, bool), np.zeros(75, bool)]
    purchase = np.r_[np.ones(40, bool), np.zeros(110, bool)]

    def brute(score, pos, neg):
        greater = (score[:, None] > score[None, :]) + 0.5 * (score[:, None] == score[None, :])
        return (pos[:, None] * neg[None, :] * greater).sum() / (pos.sum() * neg.sum())

    oracle = synth._oracle_aucs(p_click, p_conv, click, purchase)
    assert oracle["expected_ctr_auc"] == pytest.approx(brute(p_click, p_click, 1 - p_click))
    assert oracle["expected_cvr_auc"] == pytest.approx(
        brute(p_conv, p_click * p_conv, p_click * (1 - p_conv)))
    both = p_click * p_conv
    assert oracle["expected_ctcvr_auc"] == pytest.approx(brute(both, both, 1 - both))


def test_position_shares(tiny):
    out, _ = tiny
    positions = Counter()
    for _, _, _, _, triples in _read_skeleton(out / schema.skeleton_name("train")):
        positions.update(i for f, i, _ in triples if f == "301")
    shares = sorted((n / sum(positions.values()) for n in positions.values()), reverse=True)
    assert len(shares) == 3
    assert shares[0] == pytest.approx(0.62, abs=0.03)
    assert shares[1] == pytest.approx(0.375, abs=0.03)
    assert 0.001 < shares[2] < 0.02


def test_info_is_written_last(tiny, tmp_path, monkeypatch):
    out, info = tiny
    assert synth.is_complete(out) and synth.load_info(out) == json.loads(
        json.dumps(info))
    target = tmp_path / "broken"
    synth.generate(target, "tiny", seed=3, progress=False)
    assert synth.is_complete(target)

    def fail(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(synth, "_oracle_aucs", fail)
    with pytest.raises(RuntimeError):
        synth.generate(target, "tiny", seed=4, progress=False)
    assert not synth.is_complete(target)  # the old info went first
    with pytest.raises(FileNotFoundError):
        synth.load_info(target)


def test_default_folder_is_remade_when_its_profile_changed(tmp_path, monkeypatch):
    from ccp.data import loader
    monkeypatch.setattr(loader, "DATA_ROOT", tmp_path)
    folder = loader.ensure_synthetic("tiny", 0, progress=False)
    info_path = folder / synth.INFO_NAME
    info = json.loads(info_path.read_text())
    assert info["params"] == synth.profile_params_json("tiny")
    stale = {**info, "params": {**info["params"], "train_impressions": 1}}
    info_path.write_text(json.dumps(stale))
    loader.ensure_synthetic("tiny", 0, progress=False)
    assert json.loads(info_path.read_text())["params"] == synth.profile_params_json("tiny")
    # A folder the caller names is taken as it is (the regime study's data has overrides).
    info_path.write_text(json.dumps(stale))
    loader.ensure_synthetic("tiny", 0, folder, progress=False)
    assert json.loads(info_path.read_text())["params"]["train_impressions"] == 1


def test_rejects_unknown_profile_and_bad_scale(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic profile"):
        synth.generate(tmp_path, "huge")
    with pytest.raises(ValueError, match="scale"):
        synth.generate(tmp_path, "tiny", scale=0)


@pytest.mark.slow
def test_small_profile_rates_and_oracle_bands(tmp_path):
    start = time.perf_counter()
    info = synth.generate(tmp_path / "small", "small", seed=0, progress=False)
    elapsed = time.perf_counter() - start
    assert elapsed < 120
    assert info["rates_raised"]
    for split, target in (("train", 250_000), ("test", 350_000)):
        counts = info["counts"][split]
        assert counts["impressions"] == pytest.approx(target, rel=0.1)
        assert 0.035 <= counts["ctr"] <= 0.07
        assert 80 <= counts["triples_per_common_line"] <= 180
    half = info["oracle"]["test_half"]
    assert half["conversions"] >= 1000
    for name in ("test_half", "validation_half"):
        oracle = info["oracle"][name]
        assert 0.66 <= oracle["ctr_auc"] <= 0.76, oracle
        assert 0.68 <= oracle["cvr_auc"] <= 0.80, oracle
        assert 0.66 <= oracle["expected_ctr_auc"] <= 0.76, oracle
        assert 0.68 <= oracle["expected_cvr_auc"] <= 0.80, oracle


def test_achievable_ceiling_is_the_generators_own_noise_averaged_out():
    """Monte Carlo from the generator itself: redraw the unobserved noise of one tiny block
    many times (its own `noise`, so every term and its scale are the generator's) and average
    the true probabilities; the ceiling must match, row by row on average. Leaving out the
    request noise moves the mean by ~1.6e-3, over five times the bound."""
    from ccp.metrics import auc

    params = synth.params_for("tiny")
    gen = synth._Generator(params, 0, params.default_scale)
    users = np.arange(gen.sizes["users"])
    requests = gen.requests_per_block(np.array([0, len(users)]))
    counters = {f"{s}_{k}": 0 for s in synth.SPLITS for k in ("requests", "lines")}
    block = gen.block(users, {s: requests[s][0] for s in synth.SPLITS}, counters)["test"]
    seen_click, seen_conversion = block["seen_logits"]
    req, n, draws = block["request"], len(block["request"]), 300
    click_sum, conversion_sum = np.zeros(n), np.zeros(n)
    for k in range(draws):
        request_noise, impression_noise, conversion_noise = gen.noise(
            np.random.default_rng(1000 + k), req, n)
        click_sum += synth._sigmoid(seen_click + gen.click_intercept + request_noise
                                    + impression_noise)
        conversion_sum += synth._sigmoid(seen_conversion + gen.conversion_intercept
                                         + conversion_noise)
    for estimate, ceiling in ((click_sum / draws, block["p_click_achievable"]),
                              (conversion_sum / draws, block["p_conversion_achievable"])):
        assert abs(np.mean(estimate - ceiling)) < 3e-4
        assert np.max(np.abs(estimate - ceiling)) < 0.03
    # Scored like a model, the ceiling ranks as the Monte-Carlo estimate does, below the truth.
    click = block["click"]
    assert auc(click, block["p_click_achievable"]) == pytest.approx(
        auc(click, click_sum / draws), abs=2e-3)
    assert auc(click, block["p_click_achievable"]) < auc(click, block["p_click"])


def test_achievable_aucs_recomputed_from_the_truth_files(tiny):
    from sklearn.metrics import roc_auc_score

    out, info = tiny
    truth = pq.read_table(out / "truth_test.parquet").to_pandas()
    click, purchase, keys, p_click, _ = _labels_and_truth(out, "test")
    unique_keys = list(dict.fromkeys(keys))
    half_of_key = dict(zip(unique_keys, split_rule.in_test_half(unique_keys), strict=True))
    mask = np.array([half_of_key[k] for k in keys]) & ~(purchase & ~click)
    a_click = truth["p_click_achievable"].to_numpy()[mask]
    a_conv = truth["p_conversion_achievable"].to_numpy()[mask]
    c, b = click[mask], purchase[mask]
    half = info["oracle"]["test_half"]
    assert half["achievable_ctr_auc"] == pytest.approx(roc_auc_score(c, a_click), abs=1e-12)
    assert half["achievable_cvr_auc"] == pytest.approx(roc_auc_score(b[c], a_conv[c]),
                                                       abs=1e-12)
    assert half["achievable_ctcvr_auc"] == pytest.approx(roc_auc_score(c & b, a_click * a_conv),
                                                         abs=1e-12)
    for task in ("ctr", "cvr", "ctcvr"):
        assert 0.5 < half[f"achievable_{task}_auc"] < half[f"{task}_auc"], task
