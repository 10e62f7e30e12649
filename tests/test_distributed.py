"""Distributed engines on the tiny profile reproduce single-process training.

Tolerances (absolute AUC differences on the tiny test half, ~10k rows, ~800 clicks):
- XGBoost on Dask: 0.005 on every task. Its distributed `hist` merges the workers' quantile
  sketches into the bins one process finds, and sums the same gradient histograms, so the
  trees are the same up to the order of floating-point sums (measured difference: 0).
- LightGBM on Dask: 0.01 on CTR, 0.05 on CVR and CTCVR. Its data-parallel learner builds each
  feature's bins from one worker's rows, so trees legitimately differ a little; the CVR model of
  tiny learns from ~1,600 clicks and a few rounds, so such differences move its AUC by a few
  hundredths (measured 0.005 to 0.04) while the single-process AUC's own 95% bootstrap
  half-width there is ~0.046 (CTCVR ~0.064): the tolerance stays inside that sampling noise.
- DDP neural (mmoe, one epoch, 2 ranks): the same global batch and averaged gradients as one
  process, but the rows come in another order, like another shuffling seed. The tolerance is
  about twice the spread of single-process AUCs over seeds 0-3 on tiny (measured: CTR 0.007,
  CVR 0.021, CTCVR 0.004 for mmoe): 0.015 on CTR, 0.04 on CVR, 0.01 on CTCVR. Measured
  2-rank vs 1-process differences over the same seeds: at most 0.005, 0.015 and 0.004.
Each check also asserts what cannot differ: every training row used, both workers used.
"""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("distributed")

GBDT_TOLERANCE = {"xgboost": {"ctr": 0.005, "cvr": 0.005, "ctcvr": 0.005},
                  "lightgbm": {"ctr": 0.01, "cvr": 0.05, "ctcvr": 0.05}}
DDP_TOLERANCE = {"ctr": 0.015, "cvr": 0.04, "ctcvr": 0.01}
TASKS = ("ctr", "cvr", "ctcvr")


@pytest.fixture(scope="module")
def cached_tiny(tiny_data, tiny_raw_dir):
    """The tiny data set from its memory-mapped encoded cache (what the workers read)."""
    from ccp.data.loader import load

    return load("synthetic", tiny_raw_dir, synth_profile="tiny", seed=0, progress=False,
                out_of_core=True)


def _aucs(model, data) -> dict[str, float]:
    from bench.harness import evaluate

    scores = evaluate(model.predict(data.test), data.test, data.fingerprint, 0, TASKS)
    return {task: scores[task]["auc"] for task in TASKS}


def test_dask_gbdt_on_two_workers_matches_one_process(cached_tiny, tiny_profile):
    pytest.importorskip("lightgbm")
    pytest.importorskip("xgboost")
    from baselines.trees import TreeModel
    from bench.distributed import dask_gbdt
    from ccp.model import FitContext

    fit_view = dataclasses.replace(cached_tiny, test=None)
    ctx = FitContext(seed=0, threads=1, profile=tiny_profile, progress=False)
    try:
        for library, tolerance in GBDT_TOLERANCE.items():
            local = TreeModel(library, "ctr_x_cvr", encoding="count")
            local.fit(fit_view, ctx)
            remote = dask_gbdt.DaskTreeModel(library, "ctr_x_cvr", workers=2)
            remote.fit(fit_view, ctx)
            assert remote.workers == 2 and remote.info["engine"] == "dask"
            # Count tables counted chunk by chunk equal the single-process ones.
            for name, table in local.encoders["ctr"].count_tables.items():
                mine = remote.encoders["ctr"].count_tables[name]
                assert np.array_equal(table.keys, mine.keys), name
                np.testing.assert_array_equal(table.values, mine.values)
            for task in ("ctr", "cvr"):
                assert remote.info[f"{task}_train_rows"] == local.info[f"{task}_train_rows"]
            want, got = _aucs(local, cached_tiny), _aucs(remote, cached_tiny)
            for task in TASKS:
                assert abs(got[task] - want[task]) <= tolerance[task], (library, task, got,
                                                                        want)
    finally:
        dask_gbdt.close_clients()


def test_dask_engine_rejects_models_it_cannot_train():
    from bench.distributed.engines import dask_specs
    from bench.registry import select

    with pytest.raises(ValueError, match="--engine dask trains the LightGBM/XGBoost"):
        dask_specs(select(["neural/mmoe"]), None, 2)
    specs = dask_specs(select(["baselines/xgb_ctr"]), "tcp://host:8786", 3)
    assert specs[0].params["scheduler"] == "tcp://host:8786" and specs[0].params["workers"] == 3


def test_torchrun_two_ranks_match_one_process(tiny_data, tiny_raw_dir, tiny_profile, tmp_path):
    pytest.importorskip("torch")
    from ccp.model import FitContext
    from neural.trainer import NeuralRanker

    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "bench", "run", "--engine", "torchrun", "--workers", "2",
               "--models", "neural/mmoe", "--profile", "tiny", "--data-dir", str(tiny_raw_dir),
               "--out", str(out), "--no-report", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_task = {r["task"]: r for r in records if r["split"] == "test"}
    assert all(r["error"] is None and r["engine"] == "torchrun" and r["workers"] == 2
               for r in records)
    info = by_task["ctr"]["model_info"]
    assert info["n_train_rows"] + 1 >= len(tiny_data.train) / 2  # this rank's half
    assert info["global_batch_size"] == tiny_profile.neural_batch_size

    single = NeuralRanker(network="neural.models.mmoe:MMoE")
    single.fit(dataclasses.replace(tiny_data, test=None),
               FitContext(seed=0, threads=1, profile=tiny_profile, progress=False))
    want = _aucs(single, tiny_data)
    for task in TASKS:
        assert abs(by_task[task]["auc"] - want[task]) <= DDP_TOLERANCE[task], (
            task, by_task[task]["auc"], want[task])


def test_lightgbm_best_round_chosen_afterwards_equals_early_stopping():
    lightgbm = pytest.importorskip("lightgbm")
    from baselines.lgbm import best_iteration

    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 5))
    y = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(size=3000) > 1).astype(float)
    params = {"objective": "binary", "learning_rate": 0.3, "num_leaves": 31, "verbosity": -1,
              "seed": 0, "deterministic": True, "num_threads": 1}
    train = lightgbm.Dataset(X[:2000], y[:2000])
    stopped = lightgbm.train(params, train, 300, valid_sets=[
        lightgbm.Dataset(X[2000:], y[2000:], reference=train)],
        callbacks=[lightgbm.early_stopping(10, verbose=False)])
    everything = lightgbm.train(params, lightgbm.Dataset(X[:2000], y[:2000]), 300)
    best, losses = best_iteration(everything, X[2000:], y[2000:], patience=10)
    assert 1 < best < 300 and len(losses) == best + 10  # it stopped early, as LightGBM did
    assert best == stopped.best_iteration


def test_ddp_averages_touched_rows_when_auto_resolves_to_rows(tiny_data, tiny_profile, tmp_path,
                                                              monkeypatch):
    """embedding_gradients="auto" picks "rows" above neural.config.DENSE_TABLE_MAX_ROWS; the
    DDP trainer must then leave the table out of DDP and average its touched rows itself."""
    torch = pytest.importorskip("torch")
    import torch.distributed as dist

    import neural.config
    from bench.distributed import ddp_neural
    from ccp.model import FitContext

    monkeypatch.setattr(neural.config, "DENSE_TABLE_MAX_ROWS", 0)  # the tiny table is "over"
    reduced = []
    original = ddp_neural.DdpTrainer._all_reduce_table_gradient
    monkeypatch.setattr(ddp_neural.DdpTrainer, "_all_reduce_table_gradient",
                        lambda self: (reduced.append(1), original(self)))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        model = ddp_neural.DdpNeuralRanker(network="neural.models.mmoe:MMoE")
        model.fit(dataclasses.replace(tiny_data, test=None),
                  FitContext(seed=0, threads=1, profile=tiny_profile, progress=False))
    finally:
        dist.destroy_process_group()
    assert model.info["embedding_gradients"] == "rows"
    assert reduced, "the touched rows' gradients were never all-reduced across ranks"
    assert torch.isfinite(model.network.inputs.table).all()
