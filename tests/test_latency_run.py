"""The serving latency `bench run` measures on each fitted model (bench/run_latency.py)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from bench import harness
from bench.cli import main
from bench.run_latency import CANDIDATES, fastest_equal_path, measure_fitted


class TwoPaths:
    """A model whose library predict is slow and whose `predict_fast` ("compiled") is fast,
    equal to it or not."""

    def __init__(self, fast_is_equal: bool = True):
        self.fast_is_equal = fast_is_equal

    def predict(self, split):
        time.sleep(0.0004)
        n = len(split.click)
        return {k: np.full(n, 0.1) + split.dense[:, 0] for k in ("ctr", "cvr", "ctcvr")}

    def predict_fast(self, split):
        n = len(split.click)
        shift = 0.0 if self.fast_is_equal else 2e-5  # just over the tolerance of 1e-5
        return {k: np.full(n, 0.1 + shift) + split.dense[:, 0] for k in ("ctr", "cvr", "ctcvr")}


def _paths(model):
    from bench.latency import serving_paths

    return serving_paths(model)


def test_the_fastest_path_that_scores_equal_is_chosen(tiny_data):
    model = TwoPaths()
    fastest, screened = fastest_equal_path(model, _paths(model), tiny_data.test, 10)
    assert fastest == "compiled"
    assert set(screened) == {"library", "compiled"}
    assert screened["compiled"] < screened["library"]


def test_a_faster_path_that_does_not_score_equal_is_never_chosen(tiny_data):
    model = TwoPaths(fast_is_equal=False)
    assert fastest_equal_path(model, _paths(model), tiny_data.test, 10) == (None, {})


def test_reduced_precision_paths_are_never_chosen(tiny_data, monkeypatch):
    """int8/bf16 may fall within 1e-5 where scores are small; they are left out by name."""
    import bench.latency

    monkeypatch.setattr(bench.latency, "reduced_precision_paths",
                        lambda model: frozenset({"compiled"}))
    model = TwoPaths()
    assert fastest_equal_path(model, _paths(model), tiny_data.test, 10) == (None, {})


def test_records_are_the_library_and_the_fastest_equal_path_at_each_n(tiny_data, monkeypatch):
    import bench.run_latency as run_latency

    monkeypatch.setattr(run_latency, "TIMING", {"warmup": 1, "min_repeats": 5, "budget_s": 0})
    records = measure_fitted(TwoPaths(), tiny_data.test, {"model": "test/two_paths"})
    assert {(r["n_candidates"], r["path"]) for r in records} == {
        (n, p) for n in CANDIDATES for p in ("library", "compiled")}
    for record in records:
        assert record["kind"] == "latency" and record["threads"] == 1
        assert record["error"] is None and record["max_abs_diff_vs_library"] == 0.0
        assert record["latency_source"] == "run" and record["reduced_precision"] is False
        assert "compiled" in record["paths_screened"]


def _run(sample_dir, out, *extra):
    return main(["run", "--models", "baselines/constant", "baselines/logreg", "--dataset",
                 "aliccp-csv", "--data-dir", str(sample_dir), "--profile", "tiny",
                 "--min-count", "1", "--out", str(out), "--quiet", *extra])


def test_run_measures_every_fitted_model_once_without_refitting(sample_dir, tmp_path,
                                                                monkeypatch):
    from baselines.constant import ConstantPrior

    fits = []
    fit = ConstantPrior.fit
    monkeypatch.setattr(ConstantPrior, "fit", lambda self, *a: (fits.append(self),
                                                                fit(self, *a))[1])
    out = tmp_path / "run"
    assert _run(sample_dir, out, "--seeds", "0,1") == 0
    assert len(fits) == 2  # one per seed: latency used the fitted models
    latency = [r for r in harness.read_records(out) if r.get("kind") == "latency"]
    measured = {(r["model"], r["n_candidates"]) for r in latency if r["path"] == "library"}
    assert measured == {(m, n) for m in ("baselines/constant", "baselines/logreg")
                        for n in CANDIDATES}
    assert {r["seed"] for r in latency} == {0}  # the first seed only
    assert all(r["error"] is None and r["threads"] == 1 and r["p50_ms"] > 0 for r in latency)
    step = json.loads((out / harness.META_FILE).read_text())["serving_latency"]
    assert step["models"] == ["baselines/constant", "baselines/logreg"]
    assert 0 < step["seconds"] and 0 < step["cpu_seconds"] <= step["process_cpu_seconds"]
    report = (out / "report.md").read_text()
    assert "not measured" not in report and "NOT serving latency" not in report
    assert "The run measured serving latency on each fitted model" in report


def test_no_latency_skips_the_step(sample_dir, tmp_path):
    out = tmp_path / "run"
    assert _run(sample_dir, out, "--no-latency", "--no-report") == 0
    assert not [r for r in harness.read_records(out) if r.get("kind") == "latency"]
    assert "serving_latency" not in json.loads((out / harness.META_FILE).read_text())


def test_a_new_neural_path_is_picked_up_without_an_edit(sample_dir, sample_data, tiny_profile,
                                                       monkeypatch):
    """The candidates come from the family's serving code: a path added there (here one that
    wraps request_shared) is screened and, when it is the only fast equal one, chosen."""
    pytest.importorskip("torch")
    import neural.serving_paths
    from bench.harness import fitted
    from bench.registry import get

    plain = neural.serving_paths.serving_paths

    def with_new_path(model):
        paths = plain(model)
        return {"new_path": paths["request_shared"],
                **{name: _fails for name in paths if name not in ("new_path",)}}

    def _fails(split):
        raise RuntimeError("left out for this test")

    monkeypatch.setattr(neural.serving_paths, "serving_paths", with_new_path)
    model = fitted(get("neural/dnn_ctr"), sample_data, tiny_profile, 0, 1,
                   extra={"embedding_dim": "4", "mlp_dims": "8,4"})
    from bench.latency import serving_paths

    fastest, screened = fastest_equal_path(model, serving_paths(model), sample_data.test, 20)
    assert fastest == "new_path" and set(screened) == {"library", "new_path"}
