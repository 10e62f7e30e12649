"""`bench compare RUN_A RUN_B` on two tiny runs: an unchanged model shows no change, a model made
worse on purpose (CVR labels shuffled) is flagged worse, and runs on other data are refused."""

from __future__ import annotations

import json
import shutil

import pytest
from sabotage import shuffle_purchases_in_fit

from bench.cli import main
from bench.report.compare_runs import compare_runs, verdict

MODELS = ["baselines/lgbm_ctr", "neural/dnn_cvr"]


def _run(raw_dir, out) -> None:
    assert main(["run", "--models", *MODELS, "--dataset", "synthetic", "--data-dir",
                 str(raw_dir), "--profile", "tiny", "--seeds", "0", "--out", str(out),
                 "--quiet", "--no-report"]) == 0


@pytest.fixture(scope="module")
def runs(tiny_raw_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    _run(tiny_raw_dir, root / "a")
    with pytest.MonkeyPatch.context() as patch:
        shuffle_purchases_in_fit(patch, "neural/dnn_cvr")
        _run(tiny_raw_dir, root / "b")
    return root / "a", root / "b"


def test_the_model_made_worse_is_flagged_and_the_unchanged_one_is_not(runs, capsys):
    a, b = runs
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    rows = {tuple(cell.strip(" `") for cell in line.split("|")[1:3]): line
            for line in out.splitlines() if line.startswith("| `")}
    # dnn_cvr's pCTCVR is its pCVR (a CTR prior times it): noise after the shuffle.
    assert "| **worse** |" in rows[("neural/dnn_cvr", "ctcvr")]
    for task in ("ctr", "ctcvr"):  # the same code, data and seed: the same scores
        assert "| +0.0000 | [0.0000, 0.0000] | no detectable change |" in rows[
            ("baselines/lgbm_ctr", task)]
    assert "one seed" in out  # the interval leaves training noise out, and says so


def test_json_and_html_carry_the_same_rows(runs, tmp_path, capsys):
    a, b = runs
    page = tmp_path / "compare.html"
    assert main(["compare", str(a), str(b), "--json", "-", "--html", str(page)]) == 0
    stored = json.loads(capsys.readouterr().out)
    by_key = {(r["model"], r["task"]): r for r in stored["rows"]}
    worse = by_key[("neural/dnn_cvr", "ctcvr")]
    assert worse["verdict"] == "worse" and worse["ci_high"] < 0
    assert worse["difference"] == pytest.approx(worse["auc_b"] - worse["auc_a"])
    assert by_key[("baselines/lgbm_ctr", "ctr")]["train_s_ratio"] > 0
    assert stored["fingerprint"] and stored["only_in_a"] == stored["only_in_b"] == []
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<b>worse</b>" in html


def test_the_interval_is_the_reports_paired_difference(runs):
    from bench.report.results import load_run
    from ccp import stats

    a, b = runs
    row = next(r for r in compare_runs(a, b).rows
               if (r.model, r.task) == ("neural/dnn_cvr", "cvr"))
    model_a, model_b = load_run(a).model("neural/dnn_cvr"), load_run(b).model("neural/dnn_cvr")
    estimate = stats.paired_difference(model_b.tasks["cvr"].scores, model_a.tasks["cvr"].scores)
    assert (row.difference, row.ci_low, row.ci_high) == (estimate.value, *estimate.interval())


@pytest.mark.parametrize("low,high,expected", [(0.01, 0.03, "better"), (-0.03, -0.01, "worse"),
                                               (-0.01, 0.02, "no detectable change"),
                                               (None, None, "not testable")])
def test_verdict_reads_the_interval(low, high, expected):
    assert verdict(low, high) == expected


def test_runs_on_different_data_are_refused_with_the_reason(runs, tmp_path, capsys):
    a, b = runs
    other = tmp_path / "other"
    shutil.copytree(b, other)
    fingerprint = json.loads((b / "meta.json").read_text())["fingerprint"]
    for name in ("meta.json", "results.jsonl"):
        path = other / name
        path.write_text(path.read_text().replace(fingerprint, "another-data-set"))
    assert main(["compare", str(a), str(other)]) == 2
    err = capsys.readouterr().err
    assert "different data" in err and fingerprint in err and "another-data-set" in err


def test_a_folder_that_is_not_a_run_is_a_clear_error(runs, tmp_path, capsys):
    assert main(["compare", str(runs[0]), str(tmp_path / "missing")]) == 2
    assert "missing not found" in capsys.readouterr().err
