"""What a neural fit needs to know about torchrun's process group."""

from __future__ import annotations

import torch


def ranks() -> int:
    """Processes of a distributed fit (torchrun), 1 in one process."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_world_size() if distributed else 1
