"""The Triton LayerNorm as a :class:`~mlla_dense.kernels.kernel_op.KernelOp`: forward and backward launches,
planned once per input layout. The forward saves its input and the per-token mean and 1/std (float32)."""
from typing import Optional, Tuple

import torch
import triton
from torch import Tensor

from ..kernel_op import KernelOp, Plans, row_stride
from ..launcher import Launch
from ..partial_sums import ArrivalCounters, chunking
from .backward import _layer_norm_bwd_kernel
from .forward import _layer_norm_fwd_kernel
from .reference import check_inputs

# Elements per token tile of the forward and of the backward (whole tokens: BLOCK_M = tile // BLOCK_C), warps,
# programs per SM of the backward and its fewest tokens per program (fewer partials for the last program to add
# up), elements per step of that sum, software-pipelining stages of the backward's loop (1: none; more load a
# step's tiles ahead through shared memory, not yet timed). Not swept: ~32 (forward) and ~16 (backward, two
# accumulators) float32 values per thread and tensor.
TUNING = dict(tile=4096, backward_tile=2048, num_warps=4, backward_programs_per_sm=2, backward_min_rows=32,
              finish_tile=4096, backward_stages=1)


def _tile(c: int, tile: int):
    block_c = triton.next_power_of_2(c)
    return max(1, tile // block_c), block_c


class _ForwardPlan:
    def __init__(self, x, weight, bias, out_dtype):
        check_inputs(x, weight, bias)
        self.c = x.shape[-1]
        self.m = x.numel() // self.c
        self.x_stride = row_stride(x)
        block_m, block_c = _tile(self.c, TUNING['tile'])
        self.launch = Launch(_layer_norm_fwd_kernel, (triton.cdiv(self.m, block_m),), BLOCK_M=block_m,
                             BLOCK_C=block_c, num_warps=TUNING['num_warps'])


class _BackwardPlan:
    def __init__(self, dy, x, weight, stats, dres=None):
        self.c = x.shape[-1]
        self.m = x.numel() // self.c
        self.x_stride, self.dy_stride = row_stride(x), row_stride(dy)
        self.dres_stride = row_stride(dres) if dres is not None else 0
        block_m, block_c = _tile(self.c, TUNING['backward_tile'])
        self.num_chunks, self.rows_per_chunk = chunking(self.m, 1, x.device, TUNING['backward_programs_per_sm'],
                                                        max(block_m, TUNING['backward_min_rows']))
        self.part_shape = (self.num_chunks, 2, block_c)
        self.counter = ArrivalCounters(1, x.device)
        block_k = max(1, min(triton.next_power_of_2(self.num_chunks), TUNING['finish_tile'] // block_c))
        self.rows = Launch(_layer_norm_bwd_kernel, (self.num_chunks,), RESIDUAL=dres is not None, BLOCK_M=block_m,
                           BLOCK_C=block_c, BLOCK_K=block_k, STAGES=TUNING['backward_stages'],
                           num_warps=TUNING['num_warps'])


_forward_plans = Plans(_ForwardPlan)
_backward_plans = Plans(_BackwardPlan)


def _rows_of(t: Tensor, stride: Optional[int]) -> Tuple[Tensor, int]:
    """``t`` and its token stride, copied to contiguous rows first where its layout has no single stride."""
    if stride is None:
        t = t.contiguous()
        return t, t.shape[-1]
    return t, stride


def layer_norm_forward(x: Tensor, weight: Tensor, bias: Tensor, eps: float,
                       out_dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    """(y in ``out_dtype`` with x's shape, stats (2, tokens) float32: mean and 1/std per token)."""
    plan = _forward_plans((x, weight, bias), (out_dtype,))
    x, x_stride = _rows_of(x, plan.x_stride)
    y = torch.empty(x.shape, dtype=out_dtype, device=x.device)
    stats = torch.empty((2, plan.m), dtype=torch.float32, device=x.device)
    plan.launch(x, weight, bias, y, stats, plan.m, plan.c, x_stride, plan.c, eps)
    return y, stats


def layer_norm_backward(dy: Tensor, x: Tensor, weight: Tensor, stats: Tensor,
                        dres: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """(dx in x's dtype, d weight, d bias); with ``dres`` (x's shape) dx also adds it."""
    plan = _backward_plans((dy, x, weight, stats) if dres is None else (dy, x, weight, stats, dres))
    x, x_stride = _rows_of(x, plan.x_stride)
    dy, dy_stride = _rows_of(dy, plan.dy_stride)
    dres_stride = plan.dres_stride
    if dres is not None and dres_stride is None:
        dres, dres_stride = _rows_of(dres, None)
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    part = torch.empty(plan.part_shape, dtype=torch.float32, device=x.device)
    d_weight = torch.empty_like(weight)
    d_bias = torch.empty_like(weight)
    plan.rows(x, dy, weight, stats, dx if dres is None else dres, dx, part, d_weight, d_bias, plan.counter.get(),
              plan.m, plan.c, plan.rows_per_chunk, x_stride, dy_stride, dres_stride, plan.c)
    return dx, d_weight, d_bias


layer_norm_op = KernelOp('layer_norm', layer_norm_forward, layer_norm_backward, save=('x', 'weight'),
                         grads_for=('x', 'weight', 'bias'))
