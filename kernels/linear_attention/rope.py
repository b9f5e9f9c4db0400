"""2D rotary position tables of MLLA, computed once per grid and cached.

MLLA rotates channel pair p = (x[2p], x[2p+1]) of a C-channel token at (row, col) as a complex number by
``row * theta_p`` for p < C/4 and by ``col * theta_(p - C/4)`` otherwise, theta_i = 10000^(-i / (C/4)).
Written per channel, with ``partner(x)[2p] = x[2p+1]`` and ``partner(x)[2p+1] = x[2p]``::

    rope(x) = x * cos + partner(x) * signed_sin      (signed_sin = -sin on even channels, +sin on odd)

The tables are (H + W, C): rows 0..H-1 hold the row angles in the first C/2 channels (zeros elsewhere), rows
H..H+W-1 the column angles in the last C/2 channels, so the value for a token is ``t[row] + t[H + col]``.
The official code rebuilds the full (H, W, C/2) table on every call; here each (H, W, C, device, dtype) is
built once (and stays small: (H + W) x C). The kernels read float16 tables for 16-bit inputs: values in
[-1, 1] keep 11 significant bits (8x finer than bfloat16's rounding), and half the bytes made the
forward+backward 4-7% faster on an H100 (benchmarks/NOTES.md).
"""
from collections import OrderedDict

import torch

from ..launcher import is_traced

BASE = 10000.0
_CACHE_SIZE = 256
_cache: 'OrderedDict[tuple, tuple]' = OrderedDict()


def _tables(height, width, channels, device):
    """(2, H + W, C) float32: cos, then signed sin, written as one elementwise expression of (line, channel) so
    that a compiled graph builds both in one kernel."""
    half = channels // 2
    channel = torch.arange(channels, device=device)
    theta = 1.0 / (BASE ** (((channel % half) // 2) / (channels // 4)))
    line = torch.arange(height + width, device=device)
    is_row = line < height
    angles = torch.where(is_row, line, line - height)[:, None] * theta
    in_its_half = torch.where(is_row, 0, 1)[:, None] == channel // half
    sign = channel % 2 * 2 - 1
    return torch.where(in_its_half, torch.stack((angles.cos(), angles.sin() * sign)), 0.0)


def table_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the tables the kernels read for inputs of ``dtype``."""
    return torch.float32 if dtype == torch.float32 else torch.float16


def build_rope_tables(height: int, width: int, channels: int, device, dtype=torch.float32):
    """(cos, signed_sin), each (H + W, C) in ``dtype`` (computed in float32), for an ``height`` x ``width``
    grid of C-channel tokens; built anew (inside a compiled graph: sizes may be symbolic, nothing is cached).
    The two are the halves of one tensor: signed_sin starts (H + W) * C elements in, which is 16-byte aligned
    unless float16 tables have C % 8 == 4 and H + W odd (the kernels' plans see the same offset for a shape)."""
    if channels % 4:
        raise ValueError(f'2D RoPE needs a channel count divisible by 4, got {channels}')
    return _tables(height, width, channels, device).to(dtype).unbind()


def rope_tables(height: int, width: int, channels: int, device, dtype=torch.float32):
    """:func:`build_rope_tables`, cached per grid, channels, device and dtype (built there while traced)."""
    if is_traced():
        return build_rope_tables(height, width, channels, device, dtype)
    key = (height, width, channels, torch.device(device), dtype)
    tables = _cache.get(key)
    if tables is None:
        tables = build_rope_tables(height, width, channels, device, dtype)
        _cache[key] = tables
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    return tables


def cached_tables():
    """Every cached table: a CUDA graph that reads them holds these references, so an eviction cannot free
    memory the graph replays from."""
    return [table for tables in _cache.values() for table in tables]
