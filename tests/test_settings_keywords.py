"""Every model keyword is settable with --set, parsed once into its type, reaches only the
models that take it, and is recorded; `bench list --settings MODEL` lists what can be set."""

from __future__ import annotations

import json

import pytest

from bench import harness
from bench.cli import main
from bench.commands.options import keyword_value, split_settings
from bench.registry import get


def test_settings_are_split_and_typed_once():
    specs = [get("neural/aitm"), get("baselines/logreg")]
    profile, neural, model = split_settings(
        {"neural_max_epochs": "2", "mlp_dims": "64,32", "calibrator_weight": "0.25",
         "C": "3"}, specs)
    assert profile == {"neural_max_epochs": "2"}  # typed by Profile.with_overrides, once
    assert neural == {"mlp_dims": (64, 32)}
    assert model == {"C": 3.0, "calibrator_weight": 0.25}
    with pytest.raises(ValueError, match="keywords of the selected models.*calibrator_weight"):
        split_settings({"calibrator_wieght": "0.3"}, specs)
    with pytest.raises(ValueError, match="calibrator_weight=high is not float"):
        split_settings({"calibrator_weight": "high"}, specs)


def test_keyword_values_take_their_registered_type():
    assert keyword_value("x", 1.0, "2") == 2.0 and keyword_value("x", 3, "4") == 4
    assert keyword_value("x", False, "true") is True
    assert keyword_value("cvr_loss", "clicked", "entire_space") == "entire_space"
    assert keyword_value("purchase_weight", "balanced", "5") == 5.0


def test_a_set_keyword_reaches_the_models_that_take_it_and_is_recorded(tiny_raw_dir, tmp_path):
    def run(out, *extra):
        assert main(["run", "--models", "baselines/logreg", "baselines/constant", "--dataset",
                     "synthetic", "--data-dir", str(tiny_raw_dir), "--profile", "tiny",
                     "--seeds", "0", "--out", str(out), "--quiet", "--no-report",
                     "--no-latency", *extra]) == 0
        return [r for r in harness.read_records(out) if r.get("kind") == "accuracy"]

    records = run(tmp_path / "set", "--set", "C=0.0001")
    logreg = [r for r in records if r["model"] == "baselines/logreg"]
    assert logreg and all(r["set_keywords"] == {"C": 0.0001} for r in logreg)
    assert all("set_keywords" not in r for r in records if r["model"] == "baselines/constant")
    meta = json.loads((tmp_path / "set" / harness.META_FILE).read_text())
    assert meta["model_keywords"] == {"C": 0.0001}
    # The keyword changed the fit: a regularisation 10,000 times stronger than the default.
    default = {r["task"]: r["auc"] for r in run(tmp_path / "default")
               if r["model"] == "baselines/logreg" and r["split"] == "test"}
    assert default != {r["task"]: r["auc"] for r in logreg if r["split"] == "test"}


def test_list_settings_shows_budgets_neural_settings_and_the_models_keywords(capsys):
    assert main(["list", "--settings", "neural/escm2_dr"]) == 0
    text = capsys.readouterr().out
    assert "gbdt_max_rounds" in text and "neural_batch_size" in text  # budgets
    assert "embedding_dim" in text and "one of 'none', 'fixed'" in text  # neural, with ranges
    assert "counterfactual_weight" in text and "min_propensity" in text  # its own keywords
    assert main(["list", "--settings", "baselines/logreg"]) == 0
    text = capsys.readouterr().out
    assert "embedding_dim" not in text and "\n  C " in text
