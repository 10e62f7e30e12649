"""Training beyond one process on existing engines: Dask for GBDT, torch.distributed for neural.

bench.distributed.engines maps `python -m bench run --engine ...` onto these; each engine's
code lives in its own module and is imported only when that engine is chosen.
"""
