"""Bilinear resize of (B, C, h, w) maps as two matrix products: ``A_H @ x @ A_W^T``.

Bilinear interpolation (without antialiasing) is separable and linear, so each axis is a fixed (out, in) matrix
with at most two nonzeros per row. As products, forward and backward run on tensor cores with no atomics:
PyTorch's bilinear backward scatters into the small input with atomic adds, which in bfloat16 is slower than the
rest of a segmentation head's training step (benchmarks/NOTES.md). The matrices follow ``F.interpolate``'s
source-index rule exactly, so the result equals it up to rounding.
"""
import functools
from typing import Sequence

import torch
from torch import Tensor


@functools.lru_cache(maxsize=64)
def interpolation_matrix(in_size: int, out_size: int, align_corners: bool, device: torch.device) -> Tensor:
    """(out_size, in_size) float64 weights of 1-D linear interpolation, as ``F.interpolate(size=...)`` places
    the source points (align_corners False: half-pixel centres clamped at 0; True: corners on corners)."""
    dst = torch.arange(out_size, dtype=torch.float64)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = dst * scale
    else:
        src = ((dst + 0.5) * (in_size / out_size) - 0.5).clamp(min=0)
    lower = src.floor().long().clamp(max=in_size - 1)
    upper = (lower + 1).clamp(max=in_size - 1)
    frac = (src - lower).clamp(0, 1)
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    weights.index_put_((rows, lower), 1 - frac, accumulate=True)
    weights.index_put_((rows, upper), frac, accumulate=True)
    return weights.to(device)


def bilinear_resize(x: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
    """``F.interpolate(x, size, mode='bilinear', align_corners=align_corners)`` for (B, C, h, w) ``x``, as two
    matrix products in x's dtype (the autocast dtype under autocast)."""
    if x.dim() != 4:
        raise ValueError(f'bilinear_resize takes (B, C, h, w) maps, got shape {tuple(x.shape)}')
    b, c, h, w = x.shape
    out_h, out_w = (int(s) for s in size)
    if (out_h, out_w) == (h, w):
        return x
    rows = interpolation_matrix(h, out_h, align_corners, x.device)
    cols = interpolation_matrix(w, out_w, align_corners, x.device)
    dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
    with torch.autocast(x.device.type, enabled=False):
        x = x.to(dtype)
        widened = torch.matmul(x, cols.to(dtype).t())                                  # (B, C, h, W)
        tall = torch.bmm(rows.to(dtype).expand(b * c, out_h, h), widened.reshape(b * c, h, out_w))
    return tall.view(b, c, out_h, out_w)
