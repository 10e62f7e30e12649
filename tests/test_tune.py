"""`python -m bench tune`: a declared search space for every trainable model, the same trial
count for all, studies that resume, a tuned file that `run` uses and records, and choices made
on validation only (tiny profile)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bench import harness, tuned_config, tuning
from bench.cli import main
from bench.registry import all_specs, get
from ccp.search_space import space_for

TRIALS = 3
TUNED_MODELS = ("baselines/logreg", "baselines/lgbm_ctr", "neural/dnn_ctr")


def _inside(param, value) -> bool:
    if param.choices:
        return value in param.choices
    return param.low <= value <= param.high


@pytest.mark.parametrize("spec", all_specs(), ids=lambda s: s.key)
def test_every_trainable_model_has_a_search_space_that_holds_its_defaults(spec):
    from ccp.profiles import PROFILES

    space = space_for(spec)
    if not space:  # only a model that says why has none
        assert spec.untuned_why, f"{spec.key}: no search space and no untuned_why"
        return
    for profile in PROFILES.values():
        defaults = tuning.default_values(spec, space, profile)  # every keyword exists
        outside = {p.key: defaults[p.key] for p in space if not _inside(p, defaults[p.key])}
        assert not outside, f"{spec.key}: defaults outside the space in {profile.name}"
    from ccp.profiles import Profile
    from neural.config import NeuralConfig

    known = {"profile": {f.name for f in dataclasses.fields(Profile)},
             "neural": {f.name for f in dataclasses.fields(NeuralConfig)}}
    for param in space:
        assert param.target == "model" or param.name in known[param.target], param.key


def test_only_the_constant_prior_and_published_configurations_are_untuned():
    untuned = sorted(s.key for s in all_specs() if not space_for(s))
    assert "baselines/constant" in untuned
    assert all(k == "baselines/constant" or "aitm" in k for k in untuned), untuned
    families = {s.family for s in all_specs() if space_for(s)}
    assert families == {"baselines", "neural"}


@pytest.fixture(scope="module")
def tuned(tiny_raw_dir, tmp_path_factory):
    """One tuning of a linear, a tree and a neural model, as the command runs it."""
    folder = tmp_path_factory.mktemp("tuned")
    out = folder / "tuned.json"
    code = main(["tune", "--models", *TUNED_MODELS, "--trials", str(TRIALS),
                 "--dataset", "synthetic", "--data-dir", str(tiny_raw_dir), "--profile", "tiny",
                 "--storage", f"sqlite:///{folder / 'studies.db'}", "--out", str(out),
                 "--quiet"])
    assert code == 0
    return out


def test_every_model_gets_the_same_trial_count_and_its_history(tuned, tiny_data):
    content = tuned_config.read(tuned)
    assert content["fingerprint"] == tiny_data.fingerprint
    assert sorted(content["models"]) == sorted(TUNED_MODELS)
    for key, entry in content["models"].items():
        assert entry["trials"] == TRIALS and len(entry["history"]) == TRIALS, key
        assert entry["history"][0]["default"], "the first trial is the defaults"
        assert entry["wall_s"] > 0 and entry["command"].startswith("python -m bench tune")
        assert entry["n_complete"] + entry["n_pruned"] + entry["n_failed"] == TRIALS
        # The choice is the best validation score of the completed trials.
        scores = [t["value"] for t in entry["history"] if t["state"] == "complete"]
        assert entry["best_valid_score"] == max(scores)


@pytest.fixture
def run_with(tiny_raw_dir, tmp_path, monkeypatch):
    from bench import run_folder

    monkeypatch.setattr(run_folder, "REPORTS_ROOT", tmp_path / "reports")
    monkeypatch.setattr(tuned_config, "TUNED_ROOT", tmp_path / "tuned")

    def invoke(model, *extra):
        out = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}"
        code = main(["run", "--models", model, "--dataset", "synthetic", "--data-dir",
                     str(tiny_raw_dir), "--profile", "tiny", "--seeds", "0", "--out", str(out),
                     "--quiet", "--no-report", *extra])
        assert code == 0
        return [r for r in harness.read_records(out) if r.get("kind") == "accuracy"]

    return invoke


def _install(tuned, tiny_data, edit=None) -> dict:
    content = tuned_config.read(tuned)
    if edit:
        edit(content)
    tuned_config.write(tuned_config.tuned_path(tiny_data.name, "tiny"), content)
    return content


def test_run_fits_with_the_tuned_settings_and_records_them(tuned, tiny_data, run_with):
    content = _install(tuned, tiny_data)
    entry = content["models"]["baselines/lgbm_ctr"]
    records = run_with("baselines/lgbm_ctr")
    assert {r["config"] for r in records} == {"tuned"}
    record = records[0]
    assert record["config_params"] == entry["params"]
    assert record["config_file"].endswith(f"{tiny_data.name}-tiny.json")
    assert record["tuning_trials"] == TRIALS and record["tuning_wall_s"] == entry["wall_s"]
    # The fit really used them: the forest's recorded budget is the tuned one.
    leaves = entry["settings"]["profile"]["gbdt_num_leaves"]
    assert record["model_info"]["budget_num_leaves"] == leaves
    assert record["model_info"]["encoding"] == entry["settings"]["model"]["encoding"]
    defaults = run_with("baselines/lgbm_ctr", "--no-tuned")
    assert {r["config"] for r in defaults} == {"default"}
    assert defaults[0]["config_why"] == "--no-tuned"


def test_a_tuned_file_of_other_data_falls_back_to_defaults_with_the_reason(tuned, tiny_data,
                                                                           run_with):
    _install(tuned, tiny_data, lambda c: c.update(fingerprint="0000-other-data"))
    records = run_with("baselines/logreg")
    assert {r["config"] for r in records} == {"default"}
    assert "0000-other-data" in records[0]["config_why"]
    assert records[0]["model_info"]["C"] == 1.0  # the default, not the tuned C


def test_a_model_without_an_entry_runs_its_defaults(tuned, tiny_data, run_with):
    _install(tuned, tiny_data)
    records = run_with("baselines/xgb_ctr")
    assert {r["config"] for r in records} == {"default"}
    assert "no entry" in records[0]["config_why"]


class _Untouchable:
    """A test split that fails the test if tuning reads anything of it."""

    def __getattr__(self, name):
        raise AssertionError(f"tuning read the test split ({name})")

    def __len__(self):
        raise AssertionError("tuning read the test split (len)")


def test_tuning_never_reads_the_test_split_and_chooses_on_validation(tiny_data, tiny_profile,
                                                                     tmp_path):
    data = dataclasses.replace(tiny_data, test=_Untouchable())
    entry = tuning.tune_model(get("baselines/lgbm_ctr"), data, tiny_profile,
                              f"sqlite:///{tmp_path / 's.db'}", trials=4, progress=False)
    complete = [t for t in entry["history"] if t["state"] == "complete"]
    best = max(complete, key=lambda t: t["value"])
    assert entry["best_trial"] == best["number"] and entry["params"] == best["params"]
    # The value is the mean validation AUC of the outputs the model estimates (ctr, ctcvr).
    assert set(best["valid_auc"]) == {"ctr", "ctcvr"}
    assert best["value"] == pytest.approx(sum(best["valid_auc"].values()) / 2, abs=1e-6)


def test_an_interrupted_tuning_resumes_where_it_stopped(tiny_data, tiny_profile, tmp_path,
                                                        monkeypatch):
    spec, storage = get("baselines/lgbm_ctr"), f"sqlite:///{tmp_path / 's.db'}"
    first = tuning.tune_model(spec, tiny_data, tiny_profile, storage, trials=2, progress=False)
    fit = harness.fit_model

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness, "fit_model", interrupted)  # Ctrl-C in the third trial
    with pytest.raises(KeyboardInterrupt):
        tuning.tune_model(spec, tiny_data, tiny_profile, storage, trials=4, progress=False)
    monkeypatch.setattr(harness, "fit_model", fit)
    resumed = tuning.tune_model(spec, tiny_data, tiny_profile, storage, trials=4,
                                progress=False)
    assert resumed["trials"] == 4 and resumed["n_interrupted"] == 1
    # The two finished trials are kept as they were, not run again.
    assert resumed["history"][:2] == first["history"]
    assert [t["number"] for t in resumed["history"]] == [0, 1, 3, 4]


def test_a_stored_study_of_other_data_is_not_resumed(tiny_data, tiny_profile, tmp_path):
    spec, storage = get("baselines/lgbm_ctr"), f"sqlite:///{tmp_path / 's.db'}"
    tuning.tune_model(spec, tiny_data, tiny_profile, storage, trials=1, progress=False)
    other = dataclasses.replace(tiny_data, fingerprint="0000-other-data")
    with pytest.raises(ValueError, match="other data or another search space"):
        tuning.tune_model(spec, other, tiny_profile, storage, trials=2, progress=False)


@pytest.mark.parametrize("key", ["baselines/lgbm_ctr_x_cvr", "baselines/xgb_ctr_x_cvr",
                                 "neural/esmm", "neural/dnn_ctr_x_cvr"])
def test_fits_report_their_validation_checks_to_the_pruner(key, tiny_data, tiny_profile):
    steps = []
    spec = get(key)
    model, _ = harness.fit_model(spec, dataclasses.replace(tiny_data, test=None), tiny_profile,
                                 0, 1, progress=False,
                                 on_validation=lambda step, score: steps.append((step, score)))
    assert steps and all(a[0] < b[0] for a, b in zip(steps, steps[1:])), "steps increase"
    if key == "neural/dnn_ctr_x_cvr":  # the ctr network's checks only, as for the tree pairs
        assert len(steps) == len(json.loads(model.info["ctr_history"]))
        return
    if spec.family == "neural":
        assert len(steps) == len(json.loads(model.info["history"]))  # one per check
        return
    # Every round of the first (ctr) forest is a check; the cvr forest reports none.
    assert [s for s, _ in steps] == list(range(1, len(steps) + 1))
    assert len(steps) >= model.info["ctr_rounds"] and model.info["cvr_rounds"] > 0
    assert len(steps) <= tiny_profile.gbdt_max_rounds


def _tune_into_a_file_of_other_data(tuned, tiny_raw_dir, tmp_path, *extra):
    """`tune` into a copy of the tuned file whose fingerprint says other data: (exit, file)."""
    content = tuned_config.read(tuned)
    content["fingerprint"] = "0000-other-data"
    other = tmp_path / "other.json"
    tuned_config.write(other, content)
    code = main(["tune", "--models", "baselines/lgbm_ctr", "--trials", "1", "--dataset",
                 "synthetic", "--data-dir", str(tiny_raw_dir), "--profile", "tiny",
                 "--storage", f"sqlite:///{tmp_path / 's.db'}", "--out", str(other), "--quiet",
                 *extra])
    return code, other


def test_tune_refuses_to_replace_a_file_of_other_data(tuned, tiny_raw_dir, tmp_path, capsys):
    code, _ = _tune_into_a_file_of_other_data(tuned, tiny_raw_dir, tmp_path)
    assert code == 2 and "tuned on other data" in capsys.readouterr().err


def test_tune_overwrite_replaces_a_file_of_other_data(tuned, tiny_raw_dir, tmp_path):
    """--overwrite replaces the other data's file, and the models tuned after it are written
    (a regression: the write after the first model found the old fingerprint and stopped)."""
    code, other = _tune_into_a_file_of_other_data(tuned, tiny_raw_dir, tmp_path, "--overwrite")
    written = tuned_config.read(other)
    assert code == 0 and written["fingerprint"] != "0000-other-data"
    assert list(written["models"]) == ["baselines/lgbm_ctr"]
