"""Baselines beyond the registry-wide contract: features, rows, compositions, seeds, imports."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from baselines.tree_features import (
    HIGH_CARDINALITY,
    TreeFeatures,
    field_codes,
    request_folds,
)
from baselines.tree_libraries import LIBRARIES, adapter
from bench.harness import fitted
from bench.registry import get
from ccp.model import FitContext
from ccp.tasks import TASKS

_FITTED = {}


def _fit(name, data, profile, seed=0, **params):
    """A fitted model, shared by the tests that only read it (fits are the slow part)."""
    key = (name, id(data), profile, seed, tuple(sorted(params.items())))
    if key not in _FITTED:
        model = fitted(get(name), data, profile, seed, threads=1, model_settings=params)
        _FITTED[key] = (data, model)  # holding `data` keeps its id from being reused
    return _FITTED[key][1]


def _with_labels(split, click=None, purchase=None):
    return dataclasses.replace(split, click=split.click if click is None else click,
                               purchase=split.purchase if purchase is None else purchase)


def test_importing_baselines_imports_no_heavy_library():
    code = ("import sys, baselines.registry, baselines.trees, baselines.tree_features, "
            "baselines.tree_budget, baselines.logreg, baselines.compiled, "
            "baselines.xgb_to_lightgbm, baselines.constant\n"
            "heavy = [m for m in ('torch', 'lightgbm', 'xgboost', 'sklearn', 'lleaves') "
            "if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            # Set before any OpenMP runtime loads (baselines/openmp.py says why).
            "import os; assert os.environ['OMP_WAIT_POLICY'] == 'PASSIVE'")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_target_encoding_is_fitted_on_train_only_and_out_of_fold(tiny_data):
    from sklearn.preprocessing import TargetEncoder

    train = tiny_data.train
    rows, labels = TASKS["ctr"].rows_and_labels(train)
    features = TreeFeatures("target", seed=7)
    X_train = features.fit_transform(train, rows, labels, tiny_data.vocab_sizes)
    matrix = np.column_stack([field_codes(train)[f] for f in HIGH_CARDINALITY])
    reference = TargetEncoder(target_type="binary",
                              cv=request_folds(train.request[rows], labels, 5, 7))
    expected_oof = reference.fit_transform(matrix, labels)
    te_columns = [features.names.index(f"f{f}_te") for f in HIGH_CARDINALITY]
    # Train rows get the cross-fitted encodings, not the full-train ones (which hold each
    # row's own label)...
    np.testing.assert_allclose(X_train[:, te_columns], expected_oof)
    assert not np.allclose(X_train[:, te_columns], reference.transform(matrix))
    # ...and other rows get the encoder fitted on all train rows, whatever their own labels.
    test = tiny_data.test
    test_matrix = np.column_stack([field_codes(test)[f] for f in HIGH_CARDINALITY])
    X_test = features.transform(test)
    np.testing.assert_allclose(X_test[:, te_columns], reference.transform(test_matrix))
    flipped = _with_labels(test, click=1 - test.click)
    np.testing.assert_array_equal(features.transform(flipped), X_test)


def test_out_of_fold_encodings_never_hold_the_labels_of_their_own_request(tiny_data):
    """Impressions of one request share the user; a fold split inside a request would give a
    train row its request-mates' labels through every user-keyed column."""
    train = tiny_data.train
    rng = np.random.default_rng(0)
    user_codes = train.user_codes.copy()
    user_codes[:, 0] = np.arange(train.n_requests) + 2  # 101: one user per request
    click = (rng.random(train.n_requests) < 0.3)[train.request].astype(np.int8)
    split = dataclasses.replace(train, user_codes=user_codes, click=click,
                                purchase=np.zeros_like(click))
    rows, labels = TASKS["ctr"].rows_and_labels(split)
    features = TreeFeatures("count+target+cross", seed=3)
    X = features.fit_transform(split, rows, labels, tiny_data.vocab_sizes)
    for name in ("101", "101x206", "101x207", "101x216"):
        column = X[:, features.names.index(f"f{name}_te")]
        # Each user is unseen outside its own request, so its held-out value can only be the
        # fold's prior: one value per fold, and no ranking power over the labels.
        assert len(np.unique(column)) <= features.cv, name
        assert abs(_auc(labels, column) - 0.5) < 0.05, name


def test_processed_csv_form_folds_do_not_leak_request_mates_labels_either(tiny_data):
    """The processed CSV form has no request key (every row its own request): folds of rows
    would hand a row its request-mates' labels through the user columns; folds of requests
    rebuilt from the user-side fields do not."""
    train = tiny_data.train
    rng = np.random.default_rng(0)
    user_codes = train.user_codes.copy()
    user_codes[:, 0] = np.arange(train.n_requests) + 2  # 101: one user per request
    click = (rng.random(train.n_requests) < 0.3)[train.request].astype(np.int8)
    csv_form = dataclasses.replace(
        train, click=click, purchase=np.zeros_like(click), request=np.arange(len(train)),
        request_key=np.array([f"train:{i}" for i in range(len(train))]),
        user_codes=user_codes[train.request],
        user_multi={f: r.take(train.request) for f, r in train.user_multi.items()})
    rows, labels = TASKS["ctr"].rows_and_labels(csv_form)
    features = TreeFeatures("count+target+cross", seed=3)
    X = features.fit_transform(csv_form, rows, labels, tiny_data.vocab_sizes)
    for name in ("101", "101x206"):
        column = X[:, features.names.index(f"f{name}_te")]
        assert abs(_auc(labels, column) - 0.5) < 0.05, name


def _auc(labels, scores):
    from ccp.metrics import auc

    return auc(labels, scores)


def test_request_folds_are_whole_requests_balanced_and_seeded(tiny_data):
    train = tiny_data.train
    rows, labels = TASKS["cvr"].rows_and_labels(train)
    requests = train.request[rows]
    folds = request_folds(requests, labels, 5, 11)
    held_out = np.concatenate([test for _, test in folds])
    np.testing.assert_array_equal(np.sort(held_out), np.arange(len(rows)))
    fold_of = np.empty(len(rows), dtype=np.int64)
    for k, (fit, test) in enumerate(folds):
        np.testing.assert_array_equal(np.sort(np.concatenate([fit, test])), np.arange(len(rows)))
        fold_of[test] = k
    for request in np.unique(requests):
        assert len(np.unique(fold_of[requests == request])) == 1
    positives = [int(labels[test].sum()) for _, test in folds]
    biggest = max(np.bincount(np.unique(requests, return_inverse=True)[1], weights=labels))
    assert max(positives) - min(positives) <= biggest
    again = request_folds(requests, labels, 5, 11)
    other = request_folds(requests, labels, 5, 12)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))
    assert request_folds(requests, np.zeros_like(labels), 5, 11) == []  # one class


def test_validation_labels_never_reach_the_features(tiny_data, tiny_profile):
    """Early stopping reads validation labels; the encodings must not."""
    valid = tiny_data.valid
    shuffled = _with_labels(valid, click=np.random.default_rng(0).permutation(valid.click))
    model = _fit("lgbm_ctr", tiny_data, tiny_profile)
    other = _fit("lgbm_ctr", dataclasses.replace(tiny_data, valid=shuffled), tiny_profile)
    np.testing.assert_array_equal(model.encoders["ctr"].transform(tiny_data.test),
                                  other.encoders["ctr"].transform(tiny_data.test))


def test_count_encoding_counts_train_impressions(tiny_data):
    train = tiny_data.train
    rows, labels = TASKS["ctr"].rows_and_labels(train)
    features = TreeFeatures("count")
    X = features.fit_transform(train, rows, labels, tiny_data.vocab_sizes)
    item = field_codes(train)["205"]
    column = X[:, features.names.index("f205_count")]
    for code in np.unique(item[item >= 2])[:20]:
        assert (column[item == code] == (item == code).sum()).all()
    assert (column[item == 1] == 0).all()  # the shared rare code says "seen < min_count times"


@pytest.mark.parametrize("name", [f"{library.short}_cvr" for library in LIBRARIES])
def test_cvr_trees_train_on_clicked_rows_only(name, tiny_data, tiny_profile, monkeypatch):
    module = adapter(get(name).params["library"])
    seen = {}
    real_train = module.train

    def spy(X, y, X_valid, y_valid, *args, **kwargs):
        seen.update(n_train=len(y), positives=int(y.sum()), n_valid=len(y_valid))
        return real_train(X, y, X_valid, y_valid, *args, **kwargs)

    monkeypatch.setattr(module, "train", spy)
    model = _fit(name, tiny_data, tiny_profile, encoding="count+target")
    train, valid = tiny_data.train, tiny_data.valid
    assert seen["n_train"] == train.click.sum() == model.info["cvr_train_rows"]
    assert seen["positives"] == (train.click & train.purchase).sum()
    assert seen["n_valid"] == valid.click.sum()  # early stopping on clicked validation rows
    # What unclicked train rows carry beyond their codes cannot change the model.
    scrambled = dataclasses.replace(train, dense=train.dense.copy())
    unclicked = train.click == 0
    scrambled.dense[unclicked] = np.random.default_rng(1).random(
        (unclicked.sum(), train.dense.shape[1]), dtype=np.float32)
    monkeypatch.setattr(module, "train", real_train)
    again = _fit(name, dataclasses.replace(tiny_data, train=scrambled), tiny_profile,
                 encoding="count+target")
    np.testing.assert_array_equal(model.predict(tiny_data.test)["cvr"],
                                  again.predict(tiny_data.test)["cvr"])


def test_outputs_are_composed_as_declared(tiny_data, tiny_profile):
    test = tiny_data.test
    pair = _fit("lgbm_ctr_x_cvr", tiny_data, tiny_profile).predict(test)
    np.testing.assert_allclose(pair["ctcvr"], pair["ctr"] * pair["cvr"])
    ctr_only = _fit("lgbm_ctr", tiny_data, tiny_profile)
    out = ctr_only.predict(test)
    train = tiny_data.train
    cvr_prior = (train.click & train.purchase).sum() / train.click.sum()
    np.testing.assert_allclose(out["cvr"], cvr_prior)
    np.testing.assert_allclose(out["ctr"], pair["ctr"])  # the same tree as the pair's
    np.testing.assert_allclose(out["ctcvr"], out["ctr"] * cvr_prior)
    assert ctr_only.CONSTANT_OUTPUTS == ("cvr",)
    ctr_prior = train.click.mean()
    cvr_only = _fit("lgbm_cvr", tiny_data, tiny_profile)
    out = cvr_only.predict(test)
    np.testing.assert_allclose(out["ctr"], ctr_prior)
    np.testing.assert_allclose(out["cvr"], pair["cvr"])  # the same tree as the pair's
    np.testing.assert_allclose(out["ctcvr"], ctr_prior * out["cvr"])
    assert cvr_only.CONSTANT_OUTPUTS == ("ctr",)
    direct = _fit("lgbm_ctcvr", tiny_data, tiny_profile)
    out = direct.predict(test)
    ctcvr_prior = (train.click & train.purchase).mean()
    np.testing.assert_allclose(direct.priors["ctcvr"], ctcvr_prior)
    np.testing.assert_allclose(out["ctr"], np.minimum(1, out["ctcvr"] / cvr_prior))
    np.testing.assert_allclose(out["cvr"], np.minimum(1, out["ctcvr"] / ctr_prior))
    # A pCTCVR above a prior would give a "probability" above 1: it is capped.
    high = direct._compose({"ctcvr": np.array([0.5 * ctcvr_prior, 2 * cvr_prior, 0.9])})
    np.testing.assert_allclose(high["ctr"], [0.5 * ctcvr_prior / cvr_prior, 1, 1])
    np.testing.assert_allclose(high["cvr"], [0.5 * ctcvr_prior / ctr_prior,
                                             min(1, 2 * cvr_prior / ctr_prior), 1])
    assert direct.CONSTANT_OUTPUTS == ()


@pytest.mark.parametrize("name", ["lgbm_ctr", "xgb_ctr"])
def test_seed_changes_the_trees(name, tiny_data, tiny_profile):
    """The seed reaches the library: with count encoding (no target-encoding folds to
    shuffle), only the library's own column sampling can tell two seeds apart."""
    first = _fit(name, tiny_data, tiny_profile, seed=1, encoding="count")
    second = _fit(name, tiny_data, tiny_profile, seed=2, encoding="count")
    again = _fit(name, tiny_data, tiny_profile, seed=1, encoding="count")
    np.testing.assert_array_equal(first.encoders["ctr"].transform(tiny_data.test),
                                  second.encoders["ctr"].transform(tiny_data.test))
    first, second, again = (m.predict(tiny_data.test)["ctr"] for m in (first, second, again))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, again)


def _trained_with(library, budget, seed, threads, monkeypatch):
    """What the library's trained booster reports it got: LightGBM's parameters (kept in its
    model string), XGBoost's saved configuration at the end of training."""
    import json

    from baselines import lgbm, xgb

    rng = np.random.default_rng(0)
    X = rng.random((600, 4))
    y = (X[:, 0] + rng.random(600) > 1).astype(int)
    args = (X[:400], y[:400], X[400:], y[400:], [], ["a", "b", "c", "d"], budget, seed, threads)
    if library == "lightgbm":
        return lgbm.train(*args).params
    import xgboost

    seen, real_train = {}, xgboost.train

    def spy(*a, **k):
        booster = real_train(*a, **k)
        seen.update(json.loads(booster.save_config())["learner"])
        return booster

    monkeypatch.setattr(xgboost, "train", spy)
    xgb.train(*args)
    return seen


def test_threads_and_budget_reach_both_libraries(tiny_profile, monkeypatch):
    from baselines.tree_budget import TreeBudget

    # Values neither library has as its default, so a dropped parameter shows.
    profile = tiny_profile.with_overrides({"gbdt_learning_rate": "0.07", "gbdt_num_leaves": "9",
                                           "gbdt_max_bin": "63", "gbdt_stopping_metric": "auc"})
    budget = TreeBudget.from_profile(profile)
    light = _trained_with("lightgbm", budget, 5, 3, monkeypatch)
    assert light["num_threads"] == 3 and light["seed"] == 5
    assert (light["learning_rate"], light["num_leaves"], light["max_bin"]) == (0.07, 9, 63)
    assert light["max_depth"] == -1 and light["metric"] == ["auc"]
    extreme = _trained_with("xgboost", budget, 5, 3, monkeypatch)
    tree = extreme["gradient_booster"]["tree_train_param"]
    assert extreme["generic_param"]["nthread"] == "3" and extreme["generic_param"]["seed"] == "5"
    assert float(tree["eta"]) == pytest.approx(0.07)
    assert (tree["max_leaves"], tree["max_depth"], tree["max_bin"]) == ("9", "0", "63")
    assert tree["grow_policy"] == "lossguide"
    assert [m["name"] for m in extreme["metrics"]] == ["auc"]
    aitm = TreeBudget.from_profile(tiny_profile, "aitm")
    assert (aitm.learning_rate, aitm.num_leaves, aitm.max_bin, aitm.feature_fraction,
            aitm.bagging_fraction, aitm.bagging_freq) == (0.1, 70, 2000, 0.9, 0.7, 5)


@pytest.mark.parametrize("encoding", ["count", "target", "native", "count+target+cross"])
def test_every_encoding_trains(encoding, tiny_data, tiny_profile):
    model = _fit("lgbm_ctr", tiny_data, tiny_profile, encoding=encoding)
    assert model.info["encoding"] == encoding
    p = model.predict(tiny_data.test)["ctr"]
    assert np.isfinite(p).all() and 0 <= p.min() and p.max() <= 1


def test_unknown_options_are_rejected():
    with pytest.raises(ValueError, match="encoding"):
        TreeFeatures("hashing")
    with pytest.raises(ValueError, match="mode"):
        get("lgbm_ctr").build(mode="cvr_only")


@pytest.mark.parametrize("library", LIBRARIES, ids=lambda library: library.name)
def test_chunked_input_trains_the_same_forest_as_one_matrix(library, tiny_data, tiny_profile,
                                                            monkeypatch):
    """Out of core, a forest's input is assembled a chunk at a time (LightGBM Sequence,
    XGBoost QuantileDMatrix) from the same features. On tiny every train row is in LightGBM's
    bin sample and XGBoost's sketch is exact, so the forests are the same: equal predictions."""
    import ccp.data.chunks

    short = library.short
    whole = _fit(f"{short}_ctr_x_cvr", tiny_data, tiny_profile)
    monkeypatch.setattr(ccp.data.chunks, "AUTO_CHUNK_ROWS", 4096)  # tiny: ~5 chunks
    # not _fit's cache: that is the whole fit
    chunked = fitted(get(f"{short}_ctr_x_cvr"), tiny_data, tiny_profile, 0, threads=1)
    assert whole.info["ctr_input"] == "ndarray" and chunked.info["ctr_input"] == "ChunkedFeatures"
    assert chunked.info["cvr_train_rows"] == whole.info["cvr_train_rows"]
    assert chunked.info["ctr_rounds"] == whole.info["ctr_rounds"]
    a, b = whole.predict(tiny_data.test), chunked.predict(tiny_data.test)
    for task in ("ctr", "cvr", "ctcvr"):
        np.testing.assert_allclose(b[task], a[task], rtol=0, atol=1e-12, err_msg=task)


def test_every_family_trains_on_the_same_capped_rows(tiny_data, tiny_profile, monkeypatch):
    """profile.max_train_rows keeps the same whole requests for trees and neural models alike
    (and for every seed), and each model's own record of its rows agrees."""
    from baselines.trees import TreeModel
    from bench.harness import run_one
    from neural.trainer import NeuralRanker

    seen = {}

    def recording(cls):
        original = cls.fit

        def fit(self, data, ctx):
            seen.setdefault(cls.__name__, []).append(np.asarray(data.train.sample_id).copy())
            return original(self, data, ctx)
        monkeypatch.setattr(cls, "fit", fit)

    recording(TreeModel)
    recording(NeuralRanker)
    capped = tiny_profile.with_overrides({"max_train_rows": "6000"})
    records = [r for name in ("baselines/lgbm_ctr", "neural/dnn_ctr") for seed in (0, 1)
               for r in run_one(get(name), tiny_data, capped, seed, threads=1, progress=False)]
    assert all(r["error"] is None for r in records), records[0].get("error")
    ids = seen["TreeModel"] + seen["NeuralRanker"]
    assert 4000 < len(ids[0]) <= 6000 < len(tiny_data.train)
    for other in ids[1:]:
        np.testing.assert_array_equal(other, ids[0])
    # Whole requests: every kept request keeps all of its impressions.
    kept = np.isin(tiny_data.train.sample_id, ids[0])
    requests = np.asarray(tiny_data.train.request)
    assert set(requests[kept]).isdisjoint(requests[~kept])
    assert {r["train_rows"] for r in records} == {len(ids[0])}
    assert {r["model_info"]["ctr_train_rows"] for r in records
            if r["family"] == "baselines"} == {len(ids[0])}
    assert {r["model_info"]["n_train_rows"] for r in records
            if r["family"] == "neural"} == {len(ids[0])}


def test_gbdt_command_fits_the_registered_configuration(tiny_data, tiny_profile):
    """`python -m bench gbdt latency --models lgbm_aitm_ctr_x_cvr` times the AITM trees."""
    from bench.commands.gbdt import fit_registered

    model, _ = fit_registered("lgbm_aitm_ctr_x_cvr", tiny_data, tiny_profile, 0, 1)
    registered = _fit("lgbm_aitm_ctr_x_cvr", tiny_data, tiny_profile)
    assert model.info["config"] == "aitm" and model.info["budget_num_leaves"] == 70
    for key in ("ctr_rounds", "cvr_rounds", "budget_max_bin", "budget_learning_rate"):
        assert model.info[key] == registered.info[key], key
    np.testing.assert_array_equal(model.predict(tiny_data.test)["ctcvr"],
                                  registered.predict(tiny_data.test)["ctcvr"])


def test_gbdt_encodings_command_measures_the_chosen_encoding_by_default():
    from baselines.tree_features import DEFAULT_ENCODING, ENCODINGS
    from bench.cli import build_parser
    from bench.commands.gbdt import encodings_to_measure

    args = build_parser().parse_args(["gbdt", "encodings"])
    measured = encodings_to_measure(args.encodings)
    assert DEFAULT_ENCODING in measured and set(measured) == set(ENCODINGS)
    args = build_parser().parse_args(["gbdt", "encodings", "--encodings", "count,native"])
    assert encodings_to_measure(args.encodings) == ["count", "native"]


def _no_purchases(split):
    return _with_labels(split, purchase=np.zeros_like(split.purchase))


@pytest.mark.parametrize("name", ["lgbm_ctr_x_cvr", "xgb_ctcvr"])
def test_one_class_train_labels_make_declared_constant_outputs(name, tiny_data, tiny_profile):
    from bench import harness

    data = dataclasses.replace(tiny_data, train=_no_purchases(tiny_data.train))
    model = _fit(name, data, tiny_profile)
    out = model.predict(tiny_data.test)
    # No conversion in train: the cvr (or ctcvr) forest is not trained, and pCTR x a pCVR of
    # 0 is constant too.
    want = ("ctr", "cvr", "ctcvr") if model.mode == "ctcvr" else ("cvr", "ctcvr")
    assert model.CONSTANT_OUTPUTS == want
    assert model.info[f"{'cvr' if model.mode == 'ctr_x_cvr' else 'ctcvr'}"
                      "_constant_because_one_class"]
    for task in ("ctr", "cvr", "ctcvr"):
        assert (np.ptp(out[task]) == 0) == (task in want), task
        assert ("(constant" in model.OUTPUTS_HOW[task].lower()) == (task in want), task
    # The records carry it, so the report marks these outputs constant.
    records = harness.run_one(get(name), data, tiny_profile, seed=0, threads=1, progress=False)
    for record in records:
        marked = "(constant" in (record["prediction_how"] or "").lower()
        assert marked == (record["prediction"] in want), record["task"]
    by_task = {record["task"]: record for record in records}
    assert by_task["cvr"]["model_info"]["constant_outputs"] == ",".join(want)


def test_stopping_metric_recorded_is_the_one_the_library_got(tiny_data, tiny_profile,
                                                             monkeypatch):
    import baselines.lgbm

    seen, real_train = {}, baselines.lgbm.train

    def spy(X, y, X_valid, y_valid, categorical, names, budget, *args, **kwargs):
        seen[int(y.sum())] = budget.stopping_metric
        return real_train(X, y, X_valid, y_valid, categorical, names, budget, *args, **kwargs)

    monkeypatch.setattr(baselines.lgbm, "train", spy)
    by_auc = tiny_profile.with_overrides({"gbdt_stopping_metric": "auc"})
    # Validation has no conversion: CVR AUC is undefined there, so that forest stops on loss.
    data = dataclasses.replace(tiny_data, valid=_no_purchases(tiny_data.valid))
    model = _fit("lgbm_ctr_x_cvr", data, by_auc)
    train = tiny_data.train
    assert seen[int(train.click.sum())] == model.info["ctr_stopping_metric"] == "auc"
    assert seen[int((train.click & train.purchase).sum())] == "logloss"
    assert model.info["cvr_stopping_metric"] == "logloss"
    assert model.info["cvr_stopping_metric_why"] == "validation labels are one class"
    assert "budget_stopping_metric" not in model.info


@pytest.mark.parametrize("library", [library.name for library in LIBRARIES])
def test_info_records_only_the_budget_each_library_gets(library, tiny_profile):
    from baselines.tree_budget import TreeBudget

    module = adapter(library)
    budget = TreeBudget.from_profile(tiny_profile)
    passed_to_train = ("max_rounds", "early_stopping")  # train()'s own arguments
    for field in dataclasses.fields(TreeBudget):
        if field.name in passed_to_train + ("stopping_metric",):
            continue
        value = getattr(budget, field.name)
        other = value + 1 if isinstance(value, int) else value * 0.5
        changed = module.params(dataclasses.replace(budget, **{field.name: other}), 0, 1)
        reaches = changed != module.params(budget, 0, 1)
        assert reaches == (field.name in module.BUDGET_FIELDS), field.name
    assert set(passed_to_train) <= set(module.BUDGET_FIELDS)


def test_tree_info_says_which_path_predicted(tiny_data, tiny_profile):
    for library in LIBRARIES:
        name = f"{library.short}_ctr"
        info = _fit(name, tiny_data, tiny_profile).info
        assert info["predict_path"] == "library" and "compiled_path" not in info
        budget_keys = {k[len("budget_"):] for k in info if k.startswith("budget_")}
        module = get(name).build().lib
        assert budget_keys == set(module.BUDGET_FIELDS), library
    assert "budget_min_data_in_leaf" not in _fit("xgb_ctr", tiny_data, tiny_profile).info


@pytest.mark.parametrize("converges", [True, False])
def test_logreg_records_non_convergence_and_lets_other_warnings_through(converges, tiny_data,
                                                                        tiny_profile,
                                                                        monkeypatch):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    real_fit = LogisticRegression.fit

    def noisy_fit(self, X, y):
        warnings.warn("something else the user should see", UserWarning, stacklevel=2)
        if not converges:
            warnings.warn("lbfgs failed to converge", ConvergenceWarning, stacklevel=2)
        return real_fit(self, X, y)

    monkeypatch.setattr(LogisticRegression, "fit", noisy_fit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fitted(get("logreg"), tiny_data, tiny_profile, 0, threads=1)
    categories = [w.category for w in caught]
    assert categories.count(UserWarning) == 3  # one per task, none swallowed
    assert ConvergenceWarning not in categories
    assert all(model.info[f"{task}_converged"] is converges for task in ("ctr", "cvr", "ctcvr"))


def test_xgb_multi_is_one_forest_with_two_outputs_per_leaf(tiny_data, tiny_profile):
    """baselines/xgb_multi: one XGBoost forest whose leaves hold (click, click-and-purchase);
    pCTR and pCTCVR are its two outputs and pCVR their ratio."""
    import json

    model = _fit("xgb_multi", tiny_data, tiny_profile)
    config = json.loads(model.booster.save_config())
    learner = config["learner"]
    assert learner["learner_model_param"]["num_target"] == "2"
    assert learner["learner_train_param"]["multi_strategy"] == "multi_output_tree"
    out = model.booster.inplace_predict(model._features(tiny_data.test))
    p = model.predict(tiny_data.test)
    np.testing.assert_allclose(p["ctr"], out[:, 0], rtol=1e-6)
    np.testing.assert_allclose(p["ctcvr"], out[:, 1], rtol=1e-6)
    np.testing.assert_allclose(p["cvr"], np.minimum(1, out[:, 1] / out[:, 0]), rtol=1e-5)
    assert model.info["train_rows"] == len(tiny_data.train) and model.info["rounds"] >= 1


ADAPTER_API = ("BUDGET_FIELDS", "params", "train", "predict", "n_rounds", "n_nodes")


@pytest.mark.parametrize("library", LIBRARIES, ids=lambda library: library.name)
def test_every_tree_library_has_an_adapter_and_a_model_per_mode(library):
    from baselines.trees import MODES

    module = adapter(library.name)
    assert all(hasattr(module, name) for name in ADAPTER_API), library
    for mode in MODES:
        assert get(f"{library.short}_{mode}").params == {"library": library.name, "mode": mode}


def test_a_tree_library_is_one_adapter_and_one_registry_line(tiny_data, tiny_profile,
                                                             monkeypatch):
    """A library added by one line in baselines/tree_libraries.py trains and predicts through
    its adapter alone; the Dask engine refuses it by name when the adapter has no dask_train."""
    import types

    from baselines import lgbm, tree_libraries
    from baselines.trees import TreeModel
    from bench.distributed.dask_gbdt import DaskTreeModel

    fake = types.ModuleType("fake_tree_adapter")  # LightGBM under another name, no Dask
    for name in ADAPTER_API:
        setattr(fake, name, getattr(lgbm, name))
    monkeypatch.setitem(sys.modules, "fake_tree_adapter", fake)
    monkeypatch.setattr(tree_libraries, "LIBRARIES", tree_libraries.LIBRARIES + (
        tree_libraries.TreeLibrary("fakegbm", "fake", "fake_tree_adapter"),))
    model = TreeModel(library="fakegbm", mode="ctr")
    model.fit(dataclasses.replace(tiny_data, test=None),
              FitContext(seed=0, threads=1, profile=tiny_profile, progress=False))
    same = _fit("lgbm_ctr", tiny_data, tiny_profile)
    assert model.info["ctr_rounds"] == same.info["ctr_rounds"] > 0
    np.testing.assert_array_equal(model.predict(tiny_data.test)["ctr"],
                                  same.predict(tiny_data.test)["ctr"])
    with pytest.raises(ValueError, match="cannot train tree library 'fakegbm'"):
        DaskTreeModel(library="fakegbm", mode="ctr", encoding="count")
    with pytest.raises(ValueError, match="no compiled path for tree library 'fakegbm'"):
        model.compile()
