import json

import pytest

from bench import harness
from bench.cli import main
from bench.registry import ModelSpec, select


def test_registry_selects_by_glob():
    assert [s.key for s in select(["baselines/constant"])] == ["baselines/constant"]
    assert all(s.family == "baselines" for s in select(["baselines/*"]))
    with pytest.raises(ValueError, match="no registered model matches"):
        select(["nope/*"])


def test_list_imports_neither_torch_nor_gbdt_libraries():
    import subprocess
    import sys

    code = ("import sys; from bench.cli import main; main(['list']); "
            "bad = [m for m in ('torch', 'lightgbm', 'xgboost') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_run_writes_flat_records_and_meta(sample_dir, tmp_path):
    out = tmp_path / "run"
    code = main(["run", "--models", "baselines/constant", "--dataset", "aliccp-csv",
                 "--data-dir", str(sample_dir), "--profile", "tiny", "--seeds", "0,1",
                 "--out", str(out), "--quiet", "--no-report", "--min-count", "1"])
    assert code == 0
    records = harness.read_records(out)
    assert {(r["task"], r["seed"]) for r in records} == {
        (t, s) for t in ("ctr", "cvr", "ctcvr", "cvr_entire") for s in (0, 1)}
    cvr = next(r for r in records if r["task"] == "cvr")
    assert cvr["n_rows"] == 2  # the test file's clicked rows only
    assert all(r["auc"] in (0.5, None) for r in records)  # the constant prior ties everything
    for record in records:
        assert all(not isinstance(v, dict) for k, v in record.items() if k != "model_info")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["fingerprint"] == records[0]["fingerprint"]
    assert meta["seeds"] == [0, 1] and "libraries" in meta and meta["cpu_count"]
    # A second run into the same folder must be explicit.
    again = main(["run", "--models", "baselines/constant", "--dataset", "aliccp-csv",
                  "--data-dir", str(sample_dir), "--profile", "tiny", "--out", str(out),
                  "--quiet", "--no-report"])
    assert again == 2


class _Broken:
    OUTPUTS_HOW = {}

    def fit(self, data, ctx):
        raise RuntimeError("deliberate failure")


def test_a_failing_model_is_a_record_not_a_crash(sample_data, tiny_profile, tmp_path,
                                                 monkeypatch):
    import sys
    import types

    module = types.ModuleType("broken_model_for_test")
    module.Broken = _Broken
    monkeypatch.setitem(sys.modules, "broken_model_for_test", module)
    broken = ModelSpec("broken", "baselines", "broken_model_for_test:Broken", "fails")
    constant = select(["baselines/constant"])[0]
    records = harness.run_suite([broken, constant], sample_data, tiny_profile, (0,), tmp_path,
                                threads=1, progress=False)
    failed = [r for r in records if r["error"]]
    assert len(failed) == 1 and "deliberate failure" in failed[0]["error"]
    assert any(r["model"] == "baselines/constant" and r["error"] is None for r in records)
    assert len(harness.read_records(tmp_path)) == len(records)


def test_model_never_sees_the_test_split(sample_data, tiny_profile, tmp_path, monkeypatch):
    import sys
    import types

    seen = {}

    class Spy:
        OUTPUTS_HOW = {"ctr": "x", "cvr": "x", "ctcvr": "x"}

        def fit(self, data, ctx):
            seen["test"] = data.test

        def predict(self, split):
            import numpy as np

            return {k: np.full(len(split), 0.1) for k in ("ctr", "cvr", "ctcvr")}

    module = types.ModuleType("spy_model_for_test")
    module.Spy = Spy
    monkeypatch.setitem(sys.modules, "spy_model_for_test", module)
    spec = ModelSpec("spy", "baselines", "spy_model_for_test:Spy", "spy")
    harness.run_suite([spec], sample_data, tiny_profile, (0,), tmp_path, 1, progress=False)
    assert seen["test"] is None


def test_unknown_profile_setting_is_rejected(sample_dir, tmp_path, capsys):
    code = main(["run", "--models", "baselines/constant", "--dataset", "aliccp-csv",
                 "--data-dir", str(sample_dir), "--profile", "tiny", "--set", "bogus=1",
                 "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 2
    assert "unknown --set key(s) ['bogus']" in capsys.readouterr().err


def test_set_routes_neural_settings_to_the_neural_models(sample_dir, tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "r"
    code = main(["run", "--models", "neural/dnn_ctr", "baselines/constant",
                 "--dataset", "aliccp-csv", "--data-dir", str(sample_dir), "--profile", "tiny",
                 "--set", "pooling=sum", "--set", "neural_max_epochs=1", "--out", str(out),
                 "--quiet", "--no-report"])
    assert code == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    neural = [r for r in records if r["model"] == "neural/dnn_ctr"]
    assert neural and all(r["error"] is None for r in records)
    assert {r["model_info"]["pooling"] for r in neural} == {"sum"}
    assert {r["model_info"]["epochs_run"] for r in neural} == {1}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["neural_settings"] == {"pooling": "sum"}


def test_set_rejects_a_bad_neural_value(sample_dir, tmp_path, capsys):
    code = main(["run", "--models", "baselines/constant", "--dataset", "aliccp-csv",
                 "--data-dir", str(sample_dir), "--profile", "tiny", "--set", "pooling=max",
                 "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 2
    assert "pooling must be 'sum' or 'mean'" in capsys.readouterr().err
