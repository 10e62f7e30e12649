"""How close a neural serving path is to the machine: its multiply-adds and the sgemm peak.

`request_macs` runs a path once on a request under torch's FlopCounterMode, which counts the
matrix products (mm, addmm, bmm, baddbmm, einsum's products, ...) from the shapes of the
operations actually dispatched, plus the rules below for what it does not know:
- `embedding_bag`: every gathered row is one multiply-add per output column (the weighted
  sum the projected path runs instead of a product);
- dynamic int8 products (neural/serving.py): n x in x out integer multiply-adds, from the
  shapes of each call.
Element-wise work (ReLU, softmax, sigmoid, adds of a bias) is not counted: the count is of
multiply-adds, the work a GEMM-bound machine is limited by.

A path that runs outside torch (ONNX Runtime) is counted on the torch graph it was exported
from (`mac_source`): an exporter and a runtime fuse and reorder operations, they do not change
the products.

`sgemm_peak_flops` is the machine's measured float32 GEMM rate at a thread count: the best of
several timed torch matmuls of a size at which one thread reaches its plateau.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from ccp.timing import time_calls

PEAK_SIZE = 1024  # square float32 matmul timed for the peak (2 GFLOP a call)
_PEAK: dict[int, float] = {}


def _embedding_bag_flops(weight_shape, indices_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _numel(indices_shape) * weight_shape[1]


def _numel(shape) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def request_macs(score, request) -> int:
    """Multiply-adds of `score(request)` (see the module doc); `score.mac_source` if set."""
    source = getattr(score, "mac_source", score)
    aten = torch.ops.aten
    counter = FlopCounterMode(display=False, custom_mapping={
        aten._embedding_bag_forward_only: _embedding_bag_flops,
        aten._embedding_bag: _embedding_bag_flops})
    from neural.serving import _Int8Matmul

    int8 = _Int8Matmul.counted = []  # invisible to FlopCounterMode: n x in x out each
    try:
        with counter:
            source(request)
    finally:
        _Int8Matmul.counted = None
    return counter.get_total_flops() // 2 + sum(int8)


def sgemm_peak_flops(threads: int, repeats: int = 7) -> float:
    """Best float32 GEMM rate (FLOP/s) of `threads` threads, measured once per process."""
    if threads not in _PEAK:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            a = torch.randn(PEAK_SIZE, PEAK_SIZE)
            b = torch.randn(PEAK_SIZE, PEAK_SIZE)
            out = torch.empty(PEAK_SIZE, PEAK_SIZE)
            best = time_calls(lambda _: torch.mm(a, b, out=out), None, repeats,
                              warmup=1).min()
        finally:
            torch.set_num_threads(before)
        _PEAK[threads] = 2 * PEAK_SIZE**3 / best
    return _PEAK[threads]


def roofline_fields(macs: int | None, p50_ms: float | None, threads: int) -> dict:
    """Record fields: multiply-adds per request, the peak, and the share of it the path used."""
    if macs is None or not p50_ms:
        return {"macs_per_request": macs}
    peak = sgemm_peak_flops(threads)
    return {"macs_per_request": int(macs), "sgemm_peak_gflops": peak / 1e9,
            "fraction_of_sgemm_peak": 2 * macs / (p50_ms / 1e3) / peak}
