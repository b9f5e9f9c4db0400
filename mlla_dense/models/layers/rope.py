"""2D rotary position tables of MLLA, computed once per grid and cached.

MLLA rotates channel pair p of a C-channel token at (row, col) by ``row * theta_p`` for p < C/4 and by
``col * theta_(p - C/4)`` otherwise, with ``theta_i = base^(-i / (C/4))``. The angles depend on one grid axis
at a time, so the tables are kept factorized: (H, C/4, 2) for rows and (W, C/4, 2) for columns, last dim
(cos, sin). The official code rebuilds the full (H, W, C/2) table on every call; here each (H, W, C, device,
dtype) is built once.
"""
from collections import OrderedDict
from typing import Tuple

import torch

_CACHE_SIZE = 256
_cache: 'OrderedDict[tuple, Tuple[torch.Tensor, torch.Tensor]]' = OrderedDict()


def _axis_table(length: int, theta: torch.Tensor) -> torch.Tensor:
    angles = torch.arange(length, device=theta.device)[:, None] * theta
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


def rope_tables(height: int, width: int, channels: int, device, dtype=torch.float32, base: float = 10000.):
    """(rows, cols) cos/sin tables for an ``height`` x ``width`` grid of ``channels``-channel tokens."""
    if channels % 4:
        raise ValueError(f'2D RoPE needs a channel count divisible by 4, got {channels}')
    key = (height, width, channels, torch.device(device), dtype, base)
    tables = _cache.get(key)
    if tables is None:
        k_max = channels // 4
        theta = 1.0 / (base ** (torch.arange(k_max, device=device) / k_max))
        tables = (_axis_table(height, theta).to(dtype), _axis_table(width, theta).to(dtype))
        _cache[key] = tables
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    return tables
