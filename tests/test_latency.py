"""Request-level latency: requests built faithfully from test rows, timing, records, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bench import harness
from bench.cli import main
from bench.latency import (
    USER_DENSE_COLUMNS,
    assemble,
    model_threads,
    plan_requests,
    time_request,
)
from ccp.data import schema

RECORD_KEYS = {"kind", "model", "family", "dataset", "fingerprint", "n_candidates", "threads",
               "path", "p50_ms", "p99_ms", "mean_ms", "candidates_per_s", "assembly_p50_ms",
               "repeats", "version", "utc", "error"}


class FeatureHash:
    """A 'model' whose score depends on every input of an impression, user side included."""

    OUTPUTS_HOW = {"ctr": "hash", "cvr": "hash", "ctcvr": "hash"}

    def predict(self, split):
        user = split.user_codes[split.request].astype(np.float64) @ np.arange(1, 10)
        lists = sum((m.take(split.request).row_mean_weight() + m.lengths()[split.request])
                    * (k + 1) for k, m in enumerate(split.user_multi.values()))
        item = split.item_codes.astype(np.float64) @ np.arange(11, 20)
        intention = split.item_multi["210"].lengths() + split.item_multi["210"].codes[
            split.item_multi["210"].offsets[:-1].clip(max=len(split.item_multi["210"].codes) - 1)]
        score = user + lists + item + intention + split.dense.astype(np.float64) @ np.arange(12)
        return {k: score for k in ("ctr", "cvr", "ctcvr")}


def test_requests_hold_their_own_impressions_first_then_other_test_rows(tiny_data):
    test = tiny_data.test
    for n in (1, 100, 1000):
        plans = plan_requests(test, n, n_requests=5, seed=1)
        assert len({p.user_row for p in plans}) == 5, "requests come from different users"
        for plan in plans:
            assert len(plan.candidate_rows) == n
            own = np.flatnonzero(test.request == plan.user_row)
            assert plan.n_own == min(n, len(own)) >= 1
            np.testing.assert_array_equal(plan.candidate_rows[:plan.n_own], own[:plan.n_own])
            fill = plan.candidate_rows[plan.n_own:]
            assert np.all(test.request[fill] != plan.user_row)
            if len(fill) <= len(test) - len(own):
                assert len(np.unique(fill)) == len(fill), "filler drawn without replacement"
    first, again = plan_requests(test, 100, 5, seed=1), plan_requests(test, 100, 5, seed=1)
    assert all(np.array_equal(a.candidate_rows, b.candidate_rows) for a, b in zip(first, again))


def test_an_assembled_request_scores_its_own_rows_as_the_split_does(tiny_data):
    test, model = tiny_data.test, FeatureHash()
    full = model.predict(test)["ctr"]
    for plan in plan_requests(test, 300, n_requests=4, seed=2):
        request = assemble(test, plan)
        assert request.n_requests == 1 and np.all(request.request == 0)
        np.testing.assert_array_equal(request.user_codes[0], test.user_codes[plan.user_row])
        np.testing.assert_array_equal(request.item_codes, test.item_codes[plan.candidate_rows])
        # Every candidate carries this user's behaviour statistics.
        own_dense = test.dense[plan.candidate_rows[0], USER_DENSE_COLUMNS]
        assert np.all(request.dense[:, USER_DENSE_COLUMNS] == own_dense)
        scores = model.predict(request)["ctr"]
        np.testing.assert_allclose(scores[:plan.n_own], full[plan.candidate_rows[:plan.n_own]],
                                   rtol=1e-12)


def test_user_dense_columns_are_the_behaviour_statistics():
    names = [schema.DENSE_FEATURES[i] for i in USER_DENSE_COLUMNS]
    assert len(names) == 8 and all(("mean_weight" in n or "log_len" in n) for n in names)


def test_timing_runs_the_warmup_then_enough_repeats(tiny_data):
    calls = []
    plans = plan_requests(tiny_data.test, 10, n_requests=3)
    timing = time_request(lambda split: calls.append(len(split)), tiny_data.test, plans,
                          warmup=4, min_repeats=25, budget_s=0.0)
    assert timing.repeats == 25 and len(calls) == 29 and set(calls) == {10}
    assert np.all(timing.scoring_s >= 0) and np.all(timing.assembly_s > 0)


def test_model_threads_tells_the_model_and_restores_it():
    class Model:
        threads = 2

    model = Model()
    with model_threads(model, 1):
        assert model.threads == 1
    assert model.threads == 2


def test_cli_appends_latency_records_to_a_run_that_the_report_reads(sample_dir, tmp_path):
    out = tmp_path / "run"
    common = ["--models", "baselines/constant", "--dataset", "aliccp-csv", "--data-dir",
              str(sample_dir), "--profile", "tiny", "--min-count", "1", "--out", str(out),
              "--quiet", "--no-report"]
    assert main(["run", *common, "--no-latency"]) == 0
    assert main(["latency", *common, "--candidates", "1,10", "--threads", "1",
                 "--min-repeats", "20", "--budget-s", "0", "--warmup", "2"]) == 0
    latency = [r for r in harness.read_records(out) if r.get("kind") == "latency"]
    assert {(r["n_candidates"], r["path"]) for r in latency} == {(1, "library"), (10, "library")}
    for record in latency:
        assert RECORD_KEYS <= set(record), RECORD_KEYS - set(record)
        assert record["error"] is None and record["repeats"] >= 20 and record["threads"] == 1
        assert 0 < record["p50_ms"] <= record["p99_ms"]
        assert record["max_abs_diff_vs_library"] == 0.0
    from bench.report.results import load_run

    run = load_run(out)
    assert run.latency_records and len(run.latency_records) == 2


def test_cli_refuses_to_mix_data_sets_in_one_run_folder(sample_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / harness.META_FILE).write_text('{"fingerprint": "another-data-set"}')
    code = main(["latency", "--models", "baselines/constant", "--dataset", "aliccp-csv",
                 "--data-dir", str(sample_dir), "--profile", "tiny", "--out", str(out),
                 "--quiet", "--no-report"])
    assert code == 2 and "fingerprint" in capsys.readouterr().err


def test_bad_candidate_list_is_a_clear_error(capsys):
    assert main(["latency", "--candidates", "1,x"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["baselines/constant"])
def test_latency_of_a_non_neural_model_never_imports_torch(model, sample_dir, tmp_path):
    code = ("import sys; from bench.cli import main; "
            f"rc = main(['latency', '--models', '{model}', '--dataset', 'aliccp-csv', "
            f"'--data-dir', r'{sample_dir}', '--profile', 'tiny', '--candidates', '5', "
            f"'--threads', '1', '--min-repeats', '5', '--budget-s', '0', '--quiet', "
            f"'--no-report', '--out', r'{tmp_path / 'run'}']); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_cli_passes_neural_settings_to_the_models_it_fits(sample_dir, sample_data,
                                                         tiny_profile, tmp_path):
    pytest.importorskip("torch")
    from bench.harness import fitted
    from bench.registry import get
    out = tmp_path / "run"
    assert main(["latency", "--models", "neural/dnn_ctr", "--dataset", "aliccp-csv",
                 "--data-dir", str(sample_dir), "--profile", "tiny", "--out", str(out),
                 "--candidates", "5", "--threads", "1", "--min-repeats", "3", "--budget-s", "0",
                 "--warmup", "1", "--paths", "library", "--min-count", "1",
                 "--set", "embedding_dim=4",
                 "--set", "mlp_dims=8,4", "--quiet", "--no-report"]) == 0
    records = [r for r in harness.read_records(out) if r.get("kind") == "latency"]
    assert records and all(r["error"] is None for r in records)
    settings = {"embedding_dim": "4", "mlp_dims": "8,4"}
    small = fitted(get("neural/dnn_ctr"), sample_data, tiny_profile, 0, 1, extra=settings)
    default = fitted(get("neural/dnn_ctr"), sample_data, tiny_profile, 0, 1)
    assert {r["n_params"] for r in records} == {small.n_params()} != {default.n_params()}
    # Recorded as parsed, once, from the command line: typed values, not the text.
    assert json.loads((out / "meta.json").read_text())["latency_runs"][0][
        "neural_settings"] == {"embedding_dim": 4, "mlp_dims": [8, 4]}


def test_a_path_wrong_on_any_timed_request_is_recorded_as_wrong(tiny_data):
    """Equality with the library is checked on every request a path is timed on, not only the
    first ones: a path that is right on two requests and wrong after shows its difference."""
    from bench.latency import measure_model

    class Prior:
        def predict(self, split):
            n = len(split.click)
            return {k: np.full(n, 0.1) for k in ("ctr", "cvr", "ctcvr")}

    calls = {"n": 0}

    def right_twice(split):
        calls["n"] += 1
        out = Prior().predict(split)
        return out if calls["n"] <= 2 else {k: v + 0.5 for k, v in out.items()}

    records = measure_model(Prior(), {"library": Prior().predict, "right_twice": right_twice},
                            tiny_data.test, candidates=(5,), threads=(1,), min_repeats=3,
                            budget_s=0.0, warmup=0)
    diff = {r["path"]: r["max_abs_diff_vs_library"] for r in records}
    assert diff["library"] == 0.0 and diff["right_twice"] == pytest.approx(0.5)
