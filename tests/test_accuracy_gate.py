"""The accuracy gate passes an unchanged tree, fails a model whose CVR labels were shuffled, and
states tolerances derived from the seed spread of its baseline.

The end-to-end tests gate two cheap models (a few seconds); CI runs the full gate over every
registered model (`python -m bench accuracy --check` in .ci/run).
"""

from __future__ import annotations

import json
import math

import pytest
from sabotage import shuffle_purchases_in_fit

from bench import accuracy_gate as gate
from bench.cli import main

MODELS = ["baselines/lgbm_ctr", "neural/dnn_cvr"]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    path = tmp_path_factory.mktemp("accuracy") / "baseline.json"
    assert gate.update_baseline(path, seeds=(0, 1, 2, 3), check_seeds=(0, 1), models=MODELS,
                                progress=False) == 0
    return path


def test_baseline_records_seed_spread_tolerances_and_provenance(baseline):
    from scipy import stats

    stored = json.loads(baseline.read_text())
    assert stored["baseline_seeds"] == [0, 1, 2, 3] and stored["check_seeds"] == [0, 1]
    multiple = stats.t.ppf(1 - 0.05 / gate.n_random_entries(stored["entries"]), 3)
    assert stored["sd_multiple"] == pytest.approx(multiple, abs=1e-4)
    assert f"max({multiple:.2f} x sd x sqrt(1/2 + 1/4), 0.005)" in stored["rule"]
    assert stored["machine"]["libraries"]["lightgbm"] and stored["machine"]["cpu_count"]
    assert "git_commit" in stored and stored["data"]["fingerprint"]
    keys = set(stored["entries"])
    assert {k.split("|")[0] for k in keys} == set(MODELS)
    assert {k.split("|")[1] for k in keys} == {"valid", "test"}
    for entry in stored["entries"].values():
        assert len(entry["aucs"]) == 4
        assert entry["mean"] == pytest.approx(sum(entry["aucs"]) / 4, abs=1e-6)
        assert entry["tolerance"] == pytest.approx(
            max(multiple * entry["sd"] * math.sqrt(1 / 2 + 1 / 4), 0.005), abs=1e-5)
    # The seed matters to a neural model: its CVR AUC has a spread, so its own tolerance.
    assert stored["entries"]["neural/dnn_cvr|valid|cvr"]["sd"] > 0


def test_an_unchanged_tree_passes(baseline, capsys):
    assert gate.check(baseline, models=MODELS, progress=False) == 0
    out = capsys.readouterr().out
    assert "accuracy gate: ok" in out and "0 dropped beyond tolerance" in out
    assert "neural/dnn_cvr" in out and "FAIL" not in out and "note:" not in out


def test_shuffled_cvr_labels_in_one_model_fail_the_gate(baseline, capsys, monkeypatch):
    shuffle_purchases_in_fit(monkeypatch, "neural/dnn_cvr")
    assert main(["accuracy", "--check", "--baseline", str(baseline), "--models", *MODELS,
                 "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "accuracy gate: FAIL" in out
    failed = {tuple(line.split()[:2]) for line in out.splitlines()
              if "FAIL valid" in line or "FAIL test" in line}
    assert ("neural/dnn_cvr", "ctcvr") in failed  # pCTCVR of this model is its pCVR
    assert all(model == "neural/dnn_cvr" for model, _ in failed)  # the other model is fine


def _entries(mean=0.60, tolerance=0.01):
    return {"m|test|cvr": {"model": "m", "split": "test", "task": "cvr", "mean": mean,
                           "tolerance": tolerance}}


@pytest.mark.parametrize("now,dropped", [(0.591, False), (0.589, True), (0.70, False),
                                         (None, True)])
def test_only_a_drop_beyond_the_tolerance_fails(now, dropped):
    assert gate.drops(_entries(), {"m|test|cvr": now}) == ({"m|test|cvr"} if dropped else set())


def test_tolerance_scales_the_sd_of_a_difference_of_means_with_a_floor():
    assert gate.tolerance(0.01, k=5, m=2, sd_multiple=3) == pytest.approx(
        3 * 0.01 * math.sqrt(0.7))
    assert gate.tolerance(0.0, k=5, m=2, sd_multiple=3) == gate.FLOOR


def test_the_multiplier_grows_with_the_entries_and_shrinks_with_the_seeds():
    # One entry, many seeds: about the normal 95% one-sided quantile.
    assert gate.sd_multiple(1, 1000) == pytest.approx(1.646, abs=0.01)
    assert gate.sd_multiple(100, 7) > gate.sd_multiple(10, 7) > gate.sd_multiple(10, 20)
    same = {"a": {"aucs": [0.6, 0.7], "sd": 0.07}, "b": {"aucs": [0.6, 0.7], "sd": 0.07},
            "c": {"aucs": [0.5, 0.5], "sd": 0.0}}
    assert gate.n_random_entries(same) == 1  # identical entries once, fixed ones not at all


def _edited(baseline, tmp_path, edit):
    stored = json.loads(baseline.read_text())
    edit(stored)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(stored))
    return path


def test_a_baseline_made_on_other_data_fails_with_the_reason(baseline, tmp_path, capsys):
    path = _edited(baseline, tmp_path, lambda b: b["data"].update(fingerprint="other"))
    assert gate.check(path, models=MODELS, progress=False) == 1
    assert "data set changed" in capsys.readouterr().out


def test_a_model_gone_from_the_registry_fails(baseline, tmp_path, capsys, monkeypatch):
    from bench import registry

    gone = {"model": "baselines/gone", "split": "test", "task": "ctr", "mean": 0.6,
            "tolerance": 0.01}
    path = _edited(baseline, tmp_path,
                   lambda b: b["entries"].update({"baselines/gone|test|ctr": gone}))
    # Without --models every baseline entry is gated; registered here: the two cheap models.
    cheap = [s for s in registry.all_specs() if s.key in MODELS]
    monkeypatch.setattr(registry, "all_specs", lambda: cheap)
    assert gate.check(path, progress=False) == 1
    assert "no longer registered: baselines/gone" in capsys.readouterr().out


def test_a_missing_or_broken_baseline_is_a_clear_error(tmp_path, capsys):
    assert main(["accuracy", "--check", "--baseline", str(tmp_path / "none.json")]) == 2
    assert "--update-baseline" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{\n  oops")
    assert main(["accuracy", "--check", "--baseline", str(broken)]) == 2
    assert "line 2" in capsys.readouterr().err


def test_committed_baseline_is_of_the_gate_data_and_covers_every_registered_model():
    from bench.registry import all_specs

    stored = gate.load_baseline(gate.BASELINE_PATH)
    assert stored["data"]["fingerprint"] == gate.gate_data().fingerprint, (
        "the gate's data changed: `python -m bench accuracy --update-baseline`")
    missing = {s.key for s in all_specs()} - {e["model"] for e in stored["entries"].values()}
    assert not missing, (f"not in reports/accuracy_baseline.json: {sorted(missing)}; run "
                         "`python -m bench accuracy --update-baseline` and commit it")


def test_the_budgets_note_ignores_a_setting_added_since_the_baseline_at_its_default():
    stored = json.loads(json.dumps(gate.gate_profile().__dict__, default=list))
    assert gate._same_budgets(stored)
    assert gate._same_budgets({k: v for k, v in stored.items() if k != "jobs"})
    assert not gate._same_budgets({**stored, "gbdt_max_rounds": stored["gbdt_max_rounds"] + 1})
    # A setting the baseline lacks counts only at its default.
    assert not gate._same_budgets({k: v for k, v in stored.items() if k != "n_bootstrap"})
