"""Settings out of range stop with one line naming the setting and its range, exit status 2,
before any data is read; the ranges are declared beside the fields (ccp/ranges.py)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from bench.cli import main
from ccp.profiles import PROFILES, Profile, get_profile
from neural.config import NeuralConfig

RUN = ["run", "--models", "baselines/constant", "--profile", "tiny", "--no-report", "--quiet"]
LATENCY = ["latency", "--models", "baselines/constant", "--profile", "tiny", "--no-report",
           "--quiet"]

# (command line, words the error line must hold: the setting, then its allowed range)
CASES = [
    (RUN + ["--set", "neural_batch_size=0"], ["neural_batch_size=0", ">= 1"]),
    (RUN + ["--set", "learning_rate=-0.001"], ["learning_rate=-0.001", "> 0"]),
    (RUN + ["--set", "gbdt_learning_rate=-1"], ["gbdt_learning_rate=-1", "> 0"]),
    (RUN + ["--min-count", "0"], ["--min-count=0", ">= 1"]),
    (RUN + ["--seeds", ""], ["seeds=''", ">= 0", "at least one"]),
    (RUN + ["--seeds", "0,-3"], ["seeds=0,-3", ">= 0"]),
    (RUN + ["--set", "gbdt_max_rounds=abc"], ["gbdt_max_rounds=abc", "not an integer", ">= 1"]),
    (RUN + ["--set", "gbdt_feature_fraction=1.5"], ["gbdt_feature_fraction=1.5", "<= 1"]),
    (RUN + ["--set", "dropout=nan"], ["dropout=nan", ">= 0 and < 1"]),
    (RUN + ["--set", "pooling=max"], ["pooling=max", "'sum', 'mean'"]),
    (RUN + ["--set", "mlp_dims=16,0"], ["mlp_dims=16,0", ">= 1"]),
    (RUN + ["--set", "loss_balancing=gradnorm", "--set", "gradnorm_alpha=-1"],
     ["gradnorm_alpha=-1", ">= 0 and <= 10"]),
    (RUN + ["--set", "loss_weights=cvr:0"], ["loss_weights=cvr:0", "name:weight", "> 0"]),
    (RUN + ["--set", "loss_balancing=gradnorms"], ["loss_balancing=gradnorms", "'gradnorm'"]),
    (RUN + ["--threads", "0"], ["threads=0", ">= 1"]),
    (LATENCY + ["--candidates", "0"], ["--candidates=0", ">= 1"]),
    (LATENCY + ["--candidates", "1,x"], ["--candidates=1,x", ">= 1"]),
    (LATENCY + ["--threads", ""], ["--threads=''", "at least one"]),
    (LATENCY + ["--min-repeats", "0"], ["--min-repeats=0", ">= 1"]),
]


@pytest.mark.parametrize("argv, words", CASES, ids=[" ".join(c[0][-2:]) for c in CASES])
def test_out_of_range_is_one_line_before_any_data(argv, words, monkeypatch, capsys, tmp_path):
    import ccp.data.loader as loader

    def no_loading(*args, **kwargs):
        raise AssertionError("data was loaded before the settings were checked")

    monkeypatch.setattr(loader, "load", no_loading)
    monkeypatch.setattr(loader, "ensure_synthetic", no_loading)
    assert main(argv + ["--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: setting "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not (tmp_path / "run").exists()


def test_every_number_setting_declares_its_range():
    """A new budget or neural setting must say what values it takes."""
    for cls, instance in ((Profile, get_profile("tiny")), (NeuralConfig, NeuralConfig())):
        for f in fields(cls):
            if isinstance(getattr(instance, f.name), (int, float, tuple)):
                assert "allowed" in f.metadata, f"{cls.__name__}.{f.name} declares no range"


def test_named_profiles_and_defaults_are_within_their_ranges():
    from ccp.ranges import check_fields

    for profile in PROFILES.values():
        check_fields(profile)
    check_fields(NeuralConfig())
    with pytest.raises(ValueError, match="neural_max_epochs=0 is out of range"):
        Profile(name="x", synth_profile="tiny", neural_max_epochs=0)


def test_values_given_from_code_are_converted_and_checked():
    config = NeuralConfig.with_overrides({"mlp_dims": (32, 16), "dropout": 0.25,
                                          "embedding_dim": "8"})
    assert (config.mlp_dims, config.dropout, config.embedding_dim) == ((32, 16), 0.25, 8)
    with pytest.raises(ValueError, match=r"embedding_dim=2\.5 is not an integer"):
        NeuralConfig.with_overrides({"embedding_dim": 2.5})
    with pytest.raises(ValueError, match="unknown neural setting"):
        NeuralConfig.with_overrides({"embeding_dim": 8})
    profile = get_profile("tiny").with_overrides({"seeds": "3, 4", "gbdt_lambda_l2": "0"})
    assert profile.seeds == (3, 4) and profile.gbdt_lambda_l2 == 0.0
