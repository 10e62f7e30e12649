"""PyTorch multi-task models. Names are `neural/<name>`; torch is imported only when built."""

from bench.registry import ModelSpec

SPECS: list[ModelSpec] = []
