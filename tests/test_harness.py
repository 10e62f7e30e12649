import json

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from bench import harness
from bench.cli import main
from bench.registry import select
from ccp.model import ModelSpec


def test_registry_selects_by_glob():
    assert [s.key for s in select(["baselines/constant"])] == ["baselines/constant"]
    assert all(s.family == "baselines" for s in select(["baselines/*"]))
    with pytest.raises(ValueError, match="no registered model matches"):
        select(["nope/*"])


def test_a_model_spec_declares_a_known_report_group():
    assert {s.group for s in select(None)} == {"GBDT", "neural", "linear", "floor"}
    with pytest.raises(ValueError, match="baselines/x: group 'trees' is not one of"):
        ModelSpec("x", "baselines", "m:C", "d", group="trees")
    with pytest.raises(TypeError, match="group"):
        ModelSpec("x", "baselines", "m:C", "d")  # no default: never guessed


def test_list_imports_neither_torch_nor_gbdt_libraries():
    import subprocess
    import sys

    code = ("import sys; from bench.cli import main; main(['list']); "
            "bad = [m for m in ('torch', 'lightgbm', 'xgboost') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def _run_constant(data_args, out, seeds="0,1"):
    return main(["run", "--models", "baselines/constant", *data_args, "--profile", "tiny",
                 "--seeds", seeds, "--out", str(out), "--quiet", "--no-report", "--no-latency"])


def test_run_writes_flat_records_and_meta(tiny_raw_dir, tiny_data, tmp_path):
    out = tmp_path / "run"
    data_args = ["--dataset", "synthetic", "--data-dir", str(tiny_raw_dir)]
    assert _run_constant(data_args, out) == 0
    records = harness.read_records(out)
    assert {(r["task"], r["seed"], r["split"]) for r in records} == {
        (t, s, split) for t in ("ctr", "cvr", "ctcvr", "cvr_entire") for s in (0, 1)
        for split in ("test", "valid")}
    for name, split in (("test", tiny_data.test), ("valid", tiny_data.valid)):
        rows = {r["task"]: r["n_rows"] for r in records if r["split"] == name}
        assert rows == {"ctr": len(split), "cvr": int(split.click.sum()), "ctcvr": len(split),
                        "cvr_entire": len(split)}
    # Validation only chooses models: no bootstrap there; test names its resampling unit.
    assert all(r["auc_bootstrap"] == [] for r in records if r["split"] == "valid")
    assert all(r["resampling_unit"] == "user" and len(r["auc_bootstrap"]) == 50
               for r in records if r["split"] == "test")
    assert all(r["auc"] == 0.5 for r in records)  # the constant prior ties everything
    for record in records:
        assert all(not isinstance(v, dict) for k, v in record.items() if k != "model_info")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["fingerprint"] == records[0]["fingerprint"] == tiny_data.fingerprint
    assert meta["seeds"] == [0, 1] and "libraries" in meta and meta["cpu_count"]
    # A second run into the same folder must be explicit.
    assert _run_constant(data_args, out) == 2


def test_run_on_the_real_sample_scores_cvr_on_its_clicked_rows(sample_dir, tmp_path):
    """The real rows: counts read straight from the test file, not through the loader."""
    import csv

    with open(sample_dir / "ali_ccp_test_sample.csv", newline="") as lines:
        rows = list(csv.DictReader(lines))
    kept = [r for r in rows if not (r["click"] == "0" and r["purchase"] == "1")]
    clicked = [r for r in kept if r["click"] == "1"]
    out = tmp_path / "run"
    data_args = ["--dataset", "aliccp-csv", "--data-dir", str(sample_dir), "--min-count", "1"]
    assert _run_constant(data_args, out, seeds="0") == 0
    records = {r["task"]: r for r in harness.read_records(out) if r["split"] == "test"}
    assert records["ctr"]["n_rows"] == len(kept)
    assert records["cvr"]["n_rows"] == len(clicked)
    assert records["cvr"]["n_positives"] == sum(r["purchase"] == "1" for r in clicked)
    assert records["ctr"]["n_positives"] == len(clicked)


class _Broken:
    OUTPUTS_HOW = {}

    def fit(self, data, ctx):
        raise RuntimeError("deliberate failure")


def test_a_failing_model_is_a_record_not_a_crash(tiny_data, tiny_profile, tmp_path,
                                                 monkeypatch):
    import sys
    import types

    module = types.ModuleType("broken_model_for_test")
    module.Broken = _Broken
    monkeypatch.setitem(sys.modules, "broken_model_for_test", module)
    broken = ModelSpec("broken", "baselines", "broken_model_for_test:Broken", "fails",
                       group="GBDT")
    constant = select(["baselines/constant"])[0]
    records = harness.run_suite([broken, constant], tiny_data, tiny_profile, (0,), tmp_path,
                                threads=1, progress=False)
    failed = [r for r in records if r["error"]]
    assert len(failed) == 1 and "deliberate failure" in failed[0]["error"]
    assert any(r["model"] == "baselines/constant" and r["error"] is None for r in records)
    assert len(harness.read_records(tmp_path)) == len(records)


def test_model_never_sees_the_test_split(tiny_data, tiny_profile, tmp_path, monkeypatch):
    import sys
    import types

    seen = {}

    class Spy:
        OUTPUTS_HOW = {"ctr": "x", "cvr": "x", "ctcvr": "x"}

        def fit(self, data, ctx):
            seen["fit"] = (data.train, data.valid, data.test)

        def predict(self, split):
            seen.setdefault("predict", []).append(split)
            return {k: np.full(len(split), 0.1) for k in ("ctr", "cvr", "ctcvr")}

    module = types.ModuleType("spy_model_for_test")
    module.Spy = Spy
    monkeypatch.setitem(sys.modules, "spy_model_for_test", module)
    spec = ModelSpec("spy", "baselines", "spy_model_for_test:Spy", "spy", group="GBDT")
    harness.run_suite([spec], tiny_data, tiny_profile, (0,), tmp_path, 1, progress=False)
    train, valid, test = seen["fit"]
    assert test is None
    assert train is tiny_data.train and valid is tiny_data.valid
    # Scored on test, and on validation (which only chooses the report's "best" models).
    assert seen["predict"] == [tiny_data.test, tiny_data.valid]


@pytest.mark.parametrize("setting, message", [
    ("bogus=1", "unknown --set key(s) ['bogus']"),
    ("pooling=max", "setting pooling=max is out of range: allowed one of 'sum', 'mean'"),
], ids=["unknown key", "bad neural value"])
def test_a_bad_set_is_rejected_before_any_data_is_loaded(setting, message, tmp_path, capsys):
    unused = tmp_path / "data"
    code = main(["run", "--models", "baselines/constant", "--dataset", "synthetic",
                 "--data-dir", str(unused), "--profile", "tiny", "--set", setting,
                 "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not unused.exists()  # rejected before any data is generated or loaded


def test_set_routes_neural_settings_to_the_neural_models(tiny_raw_dir, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "r"
    code = main(["run", "--models", "neural/dnn_ctr", "baselines/constant",
                 "--dataset", "synthetic", "--data-dir", str(tiny_raw_dir), "--profile", "tiny",
                 "--seeds", "0", "--set", "pooling=sum", "--set", "neural_max_epochs=1",
                 "--set", "neural_batch_size=8192",
                 "--out", str(out), "--quiet", "--no-report", "--no-latency"])
    assert code == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    neural = [r for r in records if r["model"] == "neural/dnn_ctr"]
    assert neural and all(r["error"] is None for r in records)
    assert {r["model_info"]["pooling"] for r in neural} == {"sum"}
    assert {r["model_info"]["epochs_run"] for r in neural} == {1}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["neural_settings"] == {"pooling": "sum"}


# Evaluation: each task scored with its own prediction, on its own rows, as
# shared/ALICCP.md defines them; every expected figure is computed here with sklearn.

def _peeking_outputs(split, seed=0):
    """pCTR pure noise; pCVR and pCTCVR informative (made from the split's own labels)."""
    rng = np.random.default_rng(seed)
    n = len(split)
    both = split.click * split.purchase
    return {"ctr": rng.random(n),
            "cvr": (0.5 * split.purchase + rng.random(n)) / 1.5,
            "ctcvr": (0.5 * both + rng.random(n)) / 1.5}


def _task_rows_and_labels(split):
    """{task: (row mask, labels on those rows, output key)}, written out from ALICCP.md."""
    everywhere = np.ones(len(split), dtype=bool)
    clicked = split.click == 1
    both = (split.click == 1) & (split.purchase == 1)
    return {"ctr": (everywhere, split.click == 1, "ctr"),
            "cvr": (clicked, split.purchase[clicked] == 1, "cvr"),
            "ctcvr": (everywhere, both, "ctcvr"),
            "cvr_entire": (everywhere, split.purchase == 1, "cvr")}


def test_each_task_is_scored_with_its_own_prediction_on_its_own_rows(tiny_data):
    test = tiny_data.test
    outputs = _peeking_outputs(test)
    results = harness.evaluate(outputs, test, tiny_data.fingerprint, n_bootstrap=5)
    assert set(results) == {"ctr", "cvr", "ctcvr", "cvr_entire"}
    for task, (rows, labels, key) in _task_rows_and_labels(test).items():
        scores = outputs[key][rows]
        got = results[task]
        assert got["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12), task
        assert got["logloss"] == pytest.approx(sk_log_loss(labels, scores, labels=[0, 1])), task
        assert (got["n_rows"], got["n_positives"]) == (rows.sum(), labels.sum()), task
        assert got["mean_prediction"] == pytest.approx(scores.mean()), task
    # Informative pCVR, noise pCTR: the CVR AUC must show it.
    assert results["cvr"]["auc"] > results["ctr"]["auc"] + 0.15


def test_gauc_groups_by_user_across_requests(tiny_data):
    """GAUC against a plain loop over users; most scored users here span several requests."""
    from ccp.data.schema import CODE_RARE

    test = tiny_data.test
    outputs = _peeking_outputs(test)
    results = harness.evaluate(outputs, test, tiny_data.fingerprint, n_bootstrap=5)
    user_of_row = test.user_codes[test.request, 0]
    for task, (rows, labels, key) in _task_rows_and_labels(test).items():
        scores, users, requests = outputs[key][rows], user_of_row[rows], test.request[rows]
        aucs, weights, spanning = [], [], 0
        # Codes 0 (absent) and 1 (rare users pooled into one code) are nobody's own user id.
        for user in np.unique(users[users > CODE_RARE]):
            mine = users == user
            if 0 < labels[mine].sum() < mine.sum():
                aucs.append(roc_auc_score(labels[mine], scores[mine]))
                weights.append(mine.sum())
                spanning += len(np.unique(requests[mine])) > 1
        assert len(aucs) >= 10 and spanning > len(aucs) / 2, task  # the data can tell
        got = results[task]
        assert got["gauc"] == pytest.approx(np.average(aucs, weights=weights), abs=1e-12), task
        assert got["gauc_users"] == len(aucs), task
        assert got["gauc_row_share"] == pytest.approx(sum(weights) / rows.sum()), task


def test_oracle_auc_is_the_auc_of_the_true_probability(tiny_data):
    test = tiny_data.test
    outputs = _peeking_outputs(test)
    results = harness.evaluate(outputs, test, tiny_data.fingerprint, n_bootstrap=5)
    p_click_and_purchase = test.p_click * test.p_conversion
    truth = {"ctr": test.p_click, "cvr": test.p_conversion, "ctcvr": p_click_and_purchase,
             "cvr_entire": p_click_and_purchase}
    for task, (rows, labels, _) in _task_rows_and_labels(test).items():
        got = results[task]
        expected = roc_auc_score(labels, truth[task][rows])
        assert got["oracle_auc"] == pytest.approx(expected, abs=1e-12), task
        assert got["oracle_gap"] == pytest.approx(expected - got["auc"], abs=1e-12), task


def test_evaluate_resamples_requests_not_rows(tiny_data):
    """k identical rows per request must bootstrap exactly like one row per request.

    Built from the test split: each request's first row, once and then k times over. Rows
    resampled one by one would count the k copies as k draws and give other replicates.
    """
    test, k = tiny_data.test, 5
    _, first_rows = np.unique(test.request, return_index=True)
    once, k_times = test.take(first_rows), test.take(np.repeat(first_rows, k))
    outputs = _peeking_outputs(once)
    got = {"once": harness.evaluate(outputs, once, tiny_data.fingerprint, 40),
           "k_times": harness.evaluate({key: np.repeat(p, k) for key, p in outputs.items()},
                                       k_times, tiny_data.fingerprint, 40)}
    assert got["once"]["ctr"]["n_requests"] == len(first_rows)
    for task, one in got["once"].items():
        copied = got["k_times"][task]
        assert copied["n_rows"] == k * one["n_rows"] and copied["auc"] == pytest.approx(one["auc"])
        np.testing.assert_allclose(copied["auc_bootstrap"], one["auc_bootstrap"], atol=1e-6)


class _Peeking:
    OUTPUTS_HOW = {k: "made from the test labels" for k in ("ctr", "cvr", "ctcvr")}

    def fit(self, data, ctx):
        pass

    def predict(self, split):
        return {k: self.transform(v) for k, v in _peeking_outputs(split).items()}

    def transform(self, p):
        return p

    def n_params(self):
        return 0


class _PeekingSquared(_Peeking):
    def transform(self, p):
        return p * p  # other numbers, same order: the same AUC on any resample


def test_models_in_one_run_share_bootstrap_resamples(tiny_data, tiny_profile, tmp_path,
                                                     monkeypatch):
    """The report's paired comparisons need replicate i of every model on the same resample.

    Two models whose scores differ by an increasing transform have equal AUCs on any row set,
    so on shared resamples their replicates are equal one by one.
    """
    import sys
    import types

    module = types.ModuleType("peeking_models_for_test")
    module.Peeking, module.PeekingSquared = _Peeking, _PeekingSquared
    monkeypatch.setitem(sys.modules, "peeking_models_for_test", module)
    specs = [ModelSpec("peek", "baselines", "peeking_models_for_test:Peeking", "p",
                       group="GBDT"),
             ModelSpec("peek2", "baselines", "peeking_models_for_test:PeekingSquared", "p^2",
                       group="GBDT")]
    records = harness.run_suite(specs, tiny_data, tiny_profile, (0,), tmp_path, 1,
                                progress=False)
    assert all(r["error"] is None for r in records)
    by_model = {(r["model"], r["task"]): r for r in harness.read_records(tmp_path)
                if r["split"] == "test"}
    for task in ("ctr", "cvr", "ctcvr", "cvr_entire"):
        plain, squared = by_model["baselines/peek", task], by_model["baselines/peek2", task]
        assert plain["mean_prediction"] != pytest.approx(squared["mean_prediction"])
        assert len(plain["auc_bootstrap"]) == tiny_profile.n_bootstrap
        assert len(set(plain["auc_bootstrap"])) > tiny_profile.n_bootstrap // 2  # they vary
        assert plain["auc_bootstrap"] == squared["auc_bootstrap"], task
        assert (plain["auc_ci_low"], plain["auc_ci_high"]) == (
            squared["auc_ci_low"], squared["auc_ci_high"])
