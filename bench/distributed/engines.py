"""`python -m bench run --engine {local,dask,torchrun}`: where the selected models train.

- local: this process (the default).
- dask: GBDT models (baselines/lgbm_*, baselines/xgb_*) on a Dask cluster, the scheduler at
  --scheduler or a LocalCluster of --workers processes (bench.distributed.dask_gbdt).
- torchrun: neural models with DistributedDataParallel over --workers processes of this
  machine (bench.distributed.ddp_neural; for several machines run torchrun yourself, see the
  README).

Both distributed engines read the memory-mapped encoded cache, and their records say which
engine trained them and on how many workers.
"""

from __future__ import annotations

import dataclasses

ENGINES = ("local", "dask", "torchrun")
DASK_TARGET = "bench.distributed.dask_gbdt:DaskTreeModel"
TREE_TARGET = "baselines.trees:TreeModel"


def dask_specs(specs, scheduler: str | None, workers: int) -> list:
    """The tree models of `specs` as Dask-trained models; anything else is an error."""
    others = [s.key for s in specs if s.target != TREE_TARGET]
    if others:
        raise ValueError(f"--engine dask trains the LightGBM/XGBoost models only; not {others} "
                         "(select e.g. --models 'baselines/lgbm_*' 'baselines/xgb_*')")
    return [dataclasses.replace(s, target=DASK_TARGET,
                                params={**s.params, "scheduler": scheduler, "workers": workers})
            for s in specs]


def launch_torchrun(argv: list[str], workers: int) -> int:
    """Re-run `python -m bench run ...` as `workers` torchrun processes on this machine."""
    from bench.distributed.ddp_neural import launch

    return launch(argv, workers)
