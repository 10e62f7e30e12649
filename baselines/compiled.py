"""The compiled predict path for trees: lleaves (LLVM) compiles the forest to machine code.

Chosen by measurement (baselines/README.md, `python -m bench gbdt latency`): on this machine
lleaves scored 1,000 rows several times faster than `Booster.predict` with one thread, where
treelite/tl2cgen and ONNX Runtime gained far less. lleaves reads LightGBM's model format only,
so an XGBoost forest is first rewritten into that format (baselines/xgb_to_lightgbm.py). The
library's own predict stays the reference: the tests check both agree within 1e-6.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np

CACHE_DIR = Path(os.environ.get("CCPBENCH_COMPILE_CACHE",
                                Path(tempfile.gettempdir()) / "ccpbench-lleaves"))


class CompiledForest:
    """One forest compiled by lleaves; `predict(X)` gives P(y=1) like the library's predict."""

    def __init__(self, model_text: str, float32_inputs: bool, inline: bool = True):
        import lleaves

        self.float32_inputs = float32_inputs  # the library compares float32-rounded inputs
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        digest = hashlib.blake2b(f"{inline}\n{model_text}".encode(), digest_size=12).hexdigest()
        model_file = CACHE_DIR / f"{digest}.txt"
        model_file.write_text(model_text)
        started = time.perf_counter()
        self.model = lleaves.Model(model_file=str(model_file))
        # The object file is cached by content, so the same forest compiles once per machine.
        self.model.compile(cache=str(CACHE_DIR / f"{digest}.o"), finline=inline)
        self.compile_s = time.perf_counter() - started

    def predict(self, X: np.ndarray, threads: int = 1) -> np.ndarray:
        if self.float32_inputs:
            X = X.astype(np.float32).astype(np.float64)
        return self.model.predict(X, n_jobs=threads)


def compile_booster(library: str, booster, categorical: list[int]) -> CompiledForest:
    """The forest compiled from the text its library's adapter writes in LightGBM's format."""
    from baselines.tree_libraries import adapter

    module = adapter(library)
    if not hasattr(module, "lleaves_model_text"):
        raise ValueError(f"no compiled path for tree library {library!r}")
    return CompiledForest(module.lleaves_model_text(booster, categorical),
                          float32_inputs=module.FLOAT32_INPUTS)
