"""What a CUDA graph replaying these kernels must keep alive.

A capture records device addresses. Tensors an op reads that belong to neither its inputs nor the captured
module (tables a kernel package caches and may evict) must outlive the graph: its owner holds the list this
returns, taken right after the capture: the linear attention's RoPE tables and the arrival counters that launch
plans keep (partial_sums.py).
"""
from typing import List

import torch

from .linear_attention.rope import cached_tables
from .partial_sums import live_counters


def capture_keepalive() -> List[torch.Tensor]:
    """Every tensor the kernel packages hold in caches now (references; nothing is copied)."""
    return list(cached_tables()) + live_counters()
