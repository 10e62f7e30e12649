"""The regime study on the miniature grid (tiny data, 2 points, 2 cheap models, 1 seed), and the
study report's generated text against records built so that the answer is known."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from bench import harness
from bench.cli import main
from bench.report.study_lifts import load_study
from bench.report.study_text import conclusions
from bench.study.grid import REFERENCE, get_grid, point_name

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file() and "figures" not in p.parts
            and p.suffix not in (".md", ".html")}


@pytest.fixture(scope="module")
def mini_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "mini"
    assert main(["study", "regimes", "--grid", "mini", "--out", str(out), "--quiet"]) == 0
    return out


def test_mini_study_writes_run_records_per_point_and_resume_does_no_work(mini_study, capsys):
    grid, out = get_grid("mini"), mini_study
    spec = json.loads((out / "study.json").read_text())
    assert [p["run"] for p in spec["points"]] == [f"runs/{point_name(p)}" for p in grid.points()]
    rows = []
    for point in spec["points"]:
        run_dir = out / point["run"]
        assert (run_dir / harness.META_FILE).exists()
        records = harness.read_records(run_dir)
        pairs = harness.complete_pairs(records)
        assert pairs == {(m, s) for m in grid.models for s in grid.seeds}
        rows.append({r["train_rows"] for r in records})
        assert json.loads((run_dir / harness.META_FILE).read_text())["profile"][
            "max_train_rows"] == point["train_rows"]
    assert rows[0] != rows[1]  # the sizes differ, on one shared data folder
    assert len(list((out / "data").iterdir())) == 1
    for name in ("report.md", "report.html", "figures/study_lift_cvr.png"):
        assert (out / name).exists(), name
    capsys.readouterr()

    before = _snapshot(out)
    # No silent reuse of a study folder.
    assert main(["study", "regimes", "--grid", "mini", "--out", str(out), "--quiet"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["study", "regimes", "--grid", "mini", "--out", str(out), "--quiet",
                 "--resume"]) == 0
    assert "0 point(s) run, 2 already complete" in capsys.readouterr().out
    after = _snapshot(out)
    changed = sorted(k for k in after if before.get(k) != after[k])
    assert changed == ["study.json"]  # rewritten with this invocation's command only


def test_points_run_at_once_give_the_records_of_points_run_in_turn(mini_study, tmp_path):
    out = tmp_path / "parallel"
    assert main(["study", "regimes", "--grid", "mini", "--out", str(out), "--quiet",
                 "--jobs", "2", "--no-report"]) == 0

    def aucs(folder):
        return {(run.name, r["model"], r["seed"], r["task"]): r["auc"]
                for run in sorted((folder / "runs").iterdir())
                for r in harness.read_records(run) if r.get("kind") == "accuracy"
                and r.get("auc") is not None}

    parallel, in_turn = aucs(out), aucs(mini_study)
    assert parallel.keys() == in_turn.keys() and parallel
    # Each point ran as its own 1-thread process; trees and the prior do not depend on it.
    assert max(abs(parallel[k] - in_turn[k]) for k in parallel) < 1e-9
    threads = {r["threads"] for run in (out / "runs").iterdir()
               for r in harness.read_records(run) if r.get("kind") == "accuracy"}
    assert threads == {1}


def test_models_without_the_reference_are_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", "regimes", "--grid", "mini", "--out", str(out), "--quiet",
                 "--models", "baselines/constant"]) == 2
    assert f"--models must include {REFERENCE}" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(not any(shutil.which(b) for b in BROWSERS),
                    reason="chromium not installed (CI installs it: apt-get install chromium)")
def test_study_html_renders_in_headless_chromium(mini_study, tmp_path):
    browser = next(shutil.which(b) for b in BROWSERS if shutil.which(b))
    dumped = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'prof'}",
         "--virtual-time-budget=5000", "--dump-dom", (mini_study / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    assert dumped.stdout.count("<img") >= 4 and "data:image/png;base64," in dumped.stdout
    assert "Conclusions (generated from the numbers)" in dumped.stdout


# ---------------------------------------------------------------- the text follows the numbers


def _records(model: str, fingerprint: str, auc: float, shift: float, spread: float) -> list:
    """A (model, seed 0) pair's task records; bootstrap replicates auc + shift +/- spread, in
    opposite orders for shift 0 (the reference) and the rest, so the paired differences vary
    over shift +/- 2 spread."""
    reps = np.linspace(-spread, spread, 41) * (1 if shift == 0 else -1) + auc + shift
    return [{"kind": "accuracy", "model": model, "family": model.split("/")[0],
             "name": model.split("/")[1], "seed": 0, "task": task, "auc": auc + shift,
             "auc_bootstrap": [float(x) for x in reps], "n_bootstrap": len(reps),
             "fingerprint": fingerprint, "oracle_auc": 0.9, "train_rows": 100}
            for task in ("ctr", "cvr", "ctcvr")]


def _fake_study(folder, shifts: dict[int, float], spread: float = 0.01):
    """A study folder whose model `neural/fake` is `shift` above the reference per size."""
    points = []
    for rows, shift in shifts.items():
        point = {"cvr": 0.01, "relatedness": 0.5, "train_rows": rows}
        point["run"] = f"runs/{point_name(point)}"
        run_dir = folder / point["run"]
        run_dir.mkdir(parents=True)
        (run_dir / "meta.json").write_text(json.dumps({"fingerprint": "f"}))
        records = _records(REFERENCE, "f", 0.7, 0.0, spread) + _records(
            "neural/fake", "f", 0.7, shift, spread)
        (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        points.append(point)
    (folder / "study.json").write_text(json.dumps(
        {"grid": "test", "reference": REFERENCE, "seeds": [0], "points": points}))
    return load_study(folder)


def test_text_says_the_model_wins_small_and_loses_large(tmp_path):
    study = _fake_study(tmp_path, {1_000: 0.05, 100_000: -0.05})
    text = conclusions(study)["cvr"]
    assert text[0].startswith(f"`neural/fake` wins over `{REFERENCE}` at 1 of 2 points, "
                              "loses at 1, ties at 0; largest lift +0.0500")
    assert "1,000 rows: 1 win(s), 0 loss(es), 0 tie(s); 100,000 rows: 0 win(s), 1 loss(es)" \
        in text[-1]
    assert "The share of wins shrinks with data size (100% at 1,000 rows, 0% at 100,000)" \
        in text[-1]


def test_text_calls_an_interval_covering_zero_a_tie(tmp_path):
    # Lift +0.005 with replicates spread +/- 0.02 around it: the interval covers 0.
    study = _fake_study(tmp_path, {1_000: 0.005, 10_000: 0.005}, spread=0.02)
    (lift,) = [x for x in study.lifts if x.task == "ctcvr" and x.point["train_rows"] == 1_000]
    assert lift.ci_low < 0 < lift.ci_high and lift.verdict == "ties"
    text = conclusions(study)["ctcvr"]
    assert "at 0 of 2 points, loses at 0, ties at 2" in text[0]
    assert "overall the compared models **tie** (0 win(s), 0 loss(es), 2 tie(s)" in text[1]
    assert "shares of wins" not in text[-1] and "does not change" in text[-1]


def test_the_study_runs_the_loss_balanced_model_best_on_validation():
    """BEST_LOSS_BALANCED is the registered loss-balancing model whose default configuration
    (the one the study runs) has the highest validation score in the committed tuned file."""
    from bench import tuned_config
    from bench.registry import all_specs
    from bench.study.grid import BEST_LOSS_BALANCED, DEFAULT_MODELS

    content = tuned_config.read(tuned_config.tuned_path("synthetic-small-seed0", "small"))
    balanced = [s.key for s in all_specs()
                if s.params.get("loss_balancing") not in (None, "none")]
    assert len(balanced) >= 3
    scores = {key: content["models"][key]["default_valid_score"] for key in balanced}
    assert max(scores, key=scores.get) == BEST_LOSS_BALANCED
    assert BEST_LOSS_BALANCED in DEFAULT_MODELS and BEST_LOSS_BALANCED in get_grid("quick").models


def test_the_ceiling_table_gives_the_achievable_ceiling_below_the_oracle(mini_study):
    study = load_study(mini_study)
    ceilings = [(x.achievable_auc, x.oracle_auc) for x in study.lifts]
    assert ceilings and all(a is not None and o is not None for a, o in ceilings)
    assert all(0.5 < a <= o for a, o in ceilings)
    assert "achievable AUC" in (mini_study / "report.md").read_text()
