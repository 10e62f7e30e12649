"""`bench run` as a script sees it: --resume adds missing (model, seed) results to a run folder
and refuses to pool results made on other data, budgets or network settings; reports/latest
follows default folders only; a failed model is a record and exit status 1."""

from __future__ import annotations

import json

import pytest

from bench import harness
from bench.cli import main


@pytest.fixture
def run(tiny_raw_dir, tmp_path, monkeypatch):
    from bench import run_folder

    monkeypatch.setattr(run_folder, "REPORTS_ROOT", tmp_path / "reports")  # leave latest alone
    out = tmp_path / "run"

    def invoke(*extra, seeds="0"):
        return main(["run", "--models", "baselines/constant", "--dataset", "synthetic",
                     "--data-dir", str(tiny_raw_dir), "--profile", "tiny", "--seeds", seeds,
                     "--out", str(out), "--quiet", "--no-report", *extra])

    return invoke, out


def test_resume_adds_seeds_and_keeps_what_the_folder_holds(run):
    invoke, out = run
    assert invoke(seeds="0") == 0
    first = json.loads((out / harness.META_FILE).read_text())
    assert invoke("--resume", seeds="0,1") == 0
    records = harness.read_records(out)
    assert sorted({r["seed"] for r in records}) == [0, 1]
    assert sum(r["seed"] == 0 for r in records) == sum(r["seed"] == 1 for r in records)
    meta = json.loads((out / harness.META_FILE).read_text())
    assert meta["seeds"] == [0, 1] and meta["models"] == ["baselines/constant"]
    assert meta["earlier_invocations"][0]["command"] == first["command"]


def test_resume_on_other_data_is_refused(run, capsys):
    invoke, out = run
    assert invoke(seeds="0") == 0
    before = (out / harness.RESULTS_FILE).read_text()
    assert invoke("--resume", "--min-count", "3", seeds="1") == 2
    assert "another fingerprint" in capsys.readouterr().err
    assert (out / harness.RESULTS_FILE).read_text() == before


def test_resume_with_other_budgets_is_refused(run, capsys):
    invoke, out = run
    assert invoke(seeds="0") == 0
    assert invoke("--resume", "--set", "gbdt_max_rounds=7", seeds="1") == 2
    assert "another profile" in capsys.readouterr().err


def test_reports_latest_follows_default_folders_only(run, tiny_raw_dir, tmp_path):
    invoke, out = run
    latest = tmp_path / "reports" / "latest"
    assert invoke(seeds="0") == 0  # an explicit --out: the link is left alone
    assert not latest.is_symlink()
    code = main(["run", "--models", "baselines/constant", "--dataset", "synthetic",
                 "--data-dir", str(tiny_raw_dir), "--profile", "tiny", "--seeds", "0",
                 "--quiet", "--no-report"])
    assert code == 0
    assert latest.is_symlink() and latest.resolve().parent == (tmp_path / "reports" / "runs")
    assert (latest / harness.RESULTS_FILE).exists()


def test_a_failed_model_is_recorded_and_the_exit_status_says_so(run, tiny_raw_dir, capsys,
                                                                 monkeypatch):
    from baselines.logreg import LogisticFloor

    def broken_fit(self, data, ctx):
        raise RuntimeError("a model that breaks while fitting")

    monkeypatch.setattr(LogisticFloor, "fit", broken_fit)
    invoke, out = run
    code = main(["run", "--models", "baselines/constant", "baselines/logreg", "--dataset",
                 "synthetic", "--data-dir", str(tiny_raw_dir), "--profile", "tiny",
                 "--seeds", "0", "--out", str(out), "--quiet", "--no-report"])
    assert code == 1
    assert "1 model(s) failed" in capsys.readouterr().err
    records = harness.read_records(out)
    assert [r["model"] for r in records if r.get("error")] == ["baselines/logreg"]
    assert any(r["model"] == "baselines/constant" and r.get("error") is None for r in records)


def test_default_run_folders_are_under_the_checkouts_reports_folder():
    """README: a run's report lands in reports/latest/ of this checkout (the repository root is
    where pyproject.toml is), unless CCPBENCH_REPORTS says otherwise."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert (root / "pyproject.toml").exists()
    env = {k: v for k, v in os.environ.items() if k != "CCPBENCH_REPORTS"}
    shown = subprocess.run([sys.executable, "-c", "from bench.run_folder import REPORTS_ROOT; "
                            "print(REPORTS_ROOT)"], capture_output=True, text=True, env=env,
                           cwd=root, check=True).stdout.strip()
    assert Path(shown) == root / "reports"


def test_jobs_fit_pairs_at_once_with_the_records_and_latency_of_one_job(tiny_raw_dir, tmp_path,
                                                                         monkeypatch):
    """--jobs 2 forks workers for the (model, seed) fits: the same accuracy records as one job
    (1 thread each), and serving latency measured once per model, after the fits, in the
    parent."""
    from bench import run_folder

    monkeypatch.setattr(run_folder, "REPORTS_ROOT", tmp_path / "reports")
    models = ["baselines/constant", "baselines/lgbm_ctr_x_cvr", "neural/esmm"]

    def invoke(out, jobs):
        assert main(["run", "--models", *models, "--dataset", "synthetic", "--data-dir",
                     str(tiny_raw_dir), "--profile", "tiny", "--seeds", "0,1", "--threads", "1",
                     "--jobs", jobs, "--out", str(out), "--quiet", "--no-report"]) == 0
        return harness.read_records(out)

    one, two = invoke(tmp_path / "one", "1"), invoke(tmp_path / "two", "2")

    def aucs(records):
        return {(r["model"], r["seed"], r["split"], r["task"]): r["auc"] for r in records
                if r["kind"] == "accuracy"}

    assert aucs(one).keys() == aucs(two).keys() and len(aucs(two)) == 3 * 2 * 2 * 4
    assert max(abs((aucs(one)[k] or 0) - (aucs(two)[k] or 0)) for k in aucs(one)) < 1e-9
    latency = [r for r in two if r["kind"] == "latency"]
    assert {r["model"] for r in latency} == set(models) and {r["seed"] for r in latency} == {0}
    assert not any(r.get("error") for r in latency)
    assert json.loads((tmp_path / "two" / harness.META_FILE).read_text())["jobs"] == 2
