"""SS2D's layout steps: a (B, H, W, D) token map to its two sequences (rows, columns) and sequence values back
onto the map, each one Triton launch where PyTorch needs an allocation, two permuted copies or a sum and an add.

They serve models/layers/vss_block_function.py (whose backward is written by hand) and have no autograd of
their own. Triton on CUDA tensors, the reference (reference.py) otherwise; ``MLLA_DENSE_BACKEND`` overrides.
"""
import torch
import triton
from torch import Tensor

from ..backend import use_triton
from ..kernel_op import Plans
from ..launcher import Launch
from ..strides import unit_last_stride
from .kernels import _grid_to_sequences_kernel, _sequences_to_grid_kernel
from .reference import grid_to_sequences_reference, sequences_to_grid_reference

TILE = dict(BLOCK_H=16, BLOCK_W=16, BLOCK_D=32, num_warps=4)


def _launch(kernel, b, h, w, d, **constexprs):
    grid = (triton.cdiv(h, TILE['BLOCK_H']) * triton.cdiv(w, TILE['BLOCK_W']), triton.cdiv(d, TILE['BLOCK_D']), b)
    return Launch(kernel, grid, **TILE, **constexprs)


_to_sequences_plans = Plans(lambda u: _launch(_grid_to_sequences_kernel, *u.shape))
_to_grid_plans = Plans(lambda ys, h, w: _launch(_sequences_to_grid_kernel, ys.shape[0], h, w, ys.shape[2],
                                                K=ys.shape[1]))


def grid_to_sequences(u: Tensor) -> Tensor:
    """(B, H, W, D) tokens -> (B, 2, D, H*W): the map's rows and its columns, in u's dtype."""
    if not use_triton(u):
        return grid_to_sequences_reference(u)
    u = unit_last_stride(u)
    b, h, w, d = u.shape
    xs = torch.empty((b, 2, d, h * w), dtype=u.dtype, device=u.device)
    _to_sequences_plans((u,))(u, xs, h, w, d, u.stride(0), u.stride(1), u.stride(2))
    return xs


def sequences_to_grid(ys: Tensor, height: int, width: int) -> Tensor:
    """(B, K, D, H*W) values of K = 2 sequences (rows, columns) or K = 4 SS2D paths -> (B, H, W, D) tokens, their
    sum per token in ys' dtype (order and rounding in :func:`.reference.sequences_to_grid_reference`)."""
    b, k, d, length = ys.shape
    if k not in (2, 4) or length != height * width:
        raise ValueError(f'sequences_to_grid: expected (B, 2 or 4, D, {height} * {width}) values, got '
                         f'{tuple(ys.shape)}')
    if not use_triton(ys) or ys.dtype == torch.float64:  # the kernel adds in float32
        return sequences_to_grid_reference(ys, height, width)
    if ys.stride(3) != 1 or ys.stride(2) != length:
        ys = ys.contiguous()
    y = torch.empty((b, height, width, d), dtype=ys.dtype, device=ys.device)
    _to_grid_plans((ys,), (height, width))(ys, y, height, width, d, ys.stride(0), ys.stride(1))
    return y


__all__ = ['grid_to_sequences', 'sequences_to_grid', 'grid_to_sequences_reference', 'sequences_to_grid_reference']
