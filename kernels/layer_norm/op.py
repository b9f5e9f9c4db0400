"""Launches and autograd of the Triton path, as an autograd.Function in eager mode and as torch custom ops
(``mlla_dense::layer_norm_fwd`` / ``_bwd``) under torch.compile. The forward saves its input and the per-token
mean and 1/std (float32)."""
from typing import Tuple

import torch
import triton
from torch import Tensor

from ..partial_sums import chunking
from ..strides import unit_last_stride
from .backward import _layer_norm_bwd_kernel, _layer_norm_param_grad_kernel
from .forward import _layer_norm_fwd_kernel

# Elements per token tile of the forward and of the backward (whole tokens: BLOCK_M = tile // BLOCK_C), warps,
# programs per SM of the backward (fewer partials to add up afterwards). Not swept: ~32 (forward) and ~16
# (backward, two accumulators) float32 values per thread and tensor.
TUNING = dict(tile=4096, backward_tile=2048, num_warps=4, backward_programs_per_sm=2)


def _tile(c: int, tile: int):
    block_c = triton.next_power_of_2(c)
    return max(1, tile // block_c), block_c


def _rows(t: Tensor, c: int) -> Tensor:
    """(tokens, C) with a unit channel stride (a view where the layout allows)."""
    return unit_last_stride(t.reshape(-1, c))


def _forward(x, weight, bias, eps, out_dtype):
    c = x.shape[-1]
    x2 = _rows(x, c)
    m = x2.shape[0]
    block_m, block_c = _tile(c, TUNING['tile'])
    y = torch.empty((m, c), dtype=out_dtype, device=x.device)
    mean = torch.empty(m, dtype=torch.float32, device=x.device)
    rstd = torch.empty(m, dtype=torch.float32, device=x.device)
    _layer_norm_fwd_kernel[(triton.cdiv(m, block_m),)](
        x2, weight, bias, y, mean, rstd, m, c, x2.stride(0), y.stride(0), eps,
        BLOCK_M=block_m, BLOCK_C=block_c, num_warps=TUNING['num_warps'])
    return y.view(x.shape), mean, rstd


def _backward(dy, x, weight, mean, rstd):
    c = x.shape[-1]
    x2, dy2 = _rows(x, c), _rows(dy, c)
    m = x2.shape[0]
    block_m, block_c = _tile(c, TUNING['backward_tile'])
    num_chunks, rows_per_chunk = chunking(m, 1, x.device, TUNING['backward_programs_per_sm'], block_m)
    dx = torch.empty((m, c), dtype=x.dtype, device=x.device)
    part = torch.empty((num_chunks, 2, block_c), dtype=torch.float32, device=x.device)
    _layer_norm_bwd_kernel[(num_chunks,)](
        x2, dy2, weight, mean, rstd, dx, part, m, c, rows_per_chunk, x2.stride(0), dy2.stride(0), dx.stride(0),
        BLOCK_M=block_m, BLOCK_C=block_c, num_warps=TUNING['num_warps'])
    d_weight = torch.empty_like(weight)
    d_bias = torch.empty_like(weight)
    reduce_c = min(block_c, 32)
    _layer_norm_param_grad_kernel[(triton.cdiv(c, reduce_c), 2)](
        part, d_weight, d_bias, num_chunks, c, BLOCK_K=min(128, triton.next_power_of_2(num_chunks)),
        BLOCK_C=reduce_c, PART_C=block_c)
    return dx.view(x.shape), d_weight, d_bias


class LayerNormFunction(torch.autograd.Function):
    """Eager-mode autograd (no custom-op dispatch cost on every call)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, out_dtype):
        y, mean, rstd = _forward(x, weight, bias, eps, out_dtype)
        ctx.save_for_backward(x, weight, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, rstd = ctx.saved_tensors
        dx, d_weight, d_bias = _backward(dy, x, weight, mean, rstd)
        return dx, d_weight, d_bias, None, None


@torch.library.custom_op('mlla_dense::layer_norm_fwd', mutates_args=())
def layer_norm_fwd(x: Tensor, weight: Tensor, bias: Tensor, eps: float,
                   out_dtype: torch.dtype) -> Tuple[Tensor, Tensor, Tensor]:
    return _forward(x, weight, bias, eps, out_dtype)


@layer_norm_fwd.register_fake
def _(x, weight, bias, eps, out_dtype):
    m = x.numel() // x.shape[-1]
    return (x.new_empty(x.shape, dtype=out_dtype), x.new_empty(m, dtype=torch.float32),
            x.new_empty(m, dtype=torch.float32))


@torch.library.custom_op('mlla_dense::layer_norm_bwd', mutates_args=())
def layer_norm_bwd(dy: Tensor, x: Tensor, weight: Tensor, mean: Tensor,
                   rstd: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    return _backward(dy, x, weight, mean, rstd)


@layer_norm_bwd.register_fake
def _(dy, x, weight, mean, rstd):
    return x.new_empty(x.shape), torch.empty_like(weight), torch.empty_like(weight)


def _setup_context(ctx, inputs, output):
    x, weight, _, _, _ = inputs
    ctx.save_for_backward(x, weight, output[1], output[2])


def _custom_op_backward(ctx, dy, grad_mean, grad_rstd):
    x, weight, mean, rstd = ctx.saved_tensors
    dx, d_weight, d_bias = layer_norm_bwd(dy, x, weight, mean, rstd)
    return dx, d_weight, d_bias, None, None


layer_norm_fwd.register_autograd(_custom_op_backward, setup_context=_setup_context)


def layer_norm_triton(x, weight, bias, eps, out_dtype) -> Tensor:
    """The Triton path: custom op while torch.compile traces, autograd.Function otherwise."""
    if torch.compiler.is_compiling():
        return layer_norm_fwd(x, weight, bias, eps, out_dtype)[0]
    return LayerNormFunction.apply(x, weight, bias, eps, out_dtype)
