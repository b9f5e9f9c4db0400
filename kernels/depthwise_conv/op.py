"""Launches and autograd of the Triton path, as an autograd.Function in eager mode and as torch custom ops
(``mlla_dense::depthwise_conv_fwd`` / ``_bwd``) under torch.compile. The forward saves only its inputs."""
from typing import Tuple

import torch
import triton
from torch import Tensor

from ..grid_taps import tap_gradients
from ..partial_sums import chunking
from ..strides import unit_last_stride
from .backward import _dwconv_grad_weight_kernel
from .forward import _tap_sum_kernel

# Measured on an H100 (benchmarks/NOTES.md): tile of the forward and input-gradient passes, tile and programs
# per SM of the weight-gradient pass (ten per-tap accumulators per program), unrolling of the tap loops.
TUNING = dict(block_n=64, block_c=64, num_warps=4, tap_unroll=3, grad_block_n=32, grad_block_c=32, grad_warps=4,
              grad_programs_per_sm=2)


def _tap_sum(src, height, width, weight, bias, residual, sign, silu):
    """Launch the tap-sum kernel over tokens ``src`` (B, N, C); ``bias`` and ``residual`` may be None."""
    b, n, c = src.shape
    t = TUNING
    ncb = triton.cdiv(c, t['block_c'])
    out = torch.empty((b, n, c), dtype=src.dtype, device=src.device)
    res = src if residual is None else residual
    _tap_sum_kernel[(triton.cdiv(n, t['block_n']), b * ncb)](
        src, weight, weight if bias is None else bias, res, out, n, height, width, c, ncb,
        src.stride(0), src.stride(1), res.stride(0), res.stride(1), out.stride(0), out.stride(1),
        SIGN=sign, HAS_BIAS=bias is not None, SILU=silu, RESIDUAL=residual is not None,
        BLOCK_N=t['block_n'], BLOCK_C=t['block_c'], TAP_UNROLL=t['tap_unroll'], num_warps=t['num_warps'])
    return out


def _forward(x, height, width, weight, bias, residual, silu):
    x = unit_last_stride(x)
    return _tap_sum(x, height, width, weight.contiguous(), bias.contiguous(), x if residual else None, 1, silu)


def _backward(dy, x, height, width, weight, bias, residual, silu):
    dy, x, weight = unit_last_stride(dy), unit_last_stride(x), weight.contiguous()
    b, n, c = x.shape
    t = TUNING
    ncb = triton.cdiv(c, t['grad_block_c'])
    num_chunks, tokens_per_chunk = chunking(n, b * ncb, x.device, t['grad_programs_per_sm'], t['grad_block_n'])
    g = torch.empty_like(x) if silu else dy
    part = torch.empty((num_chunks, b * ncb, 10, t['grad_block_c']), dtype=torch.float32, device=x.device)
    _dwconv_grad_weight_kernel[(num_chunks, b * ncb)](
        x, dy, weight, bias.contiguous(), g, part, n, height, width, c, ncb, tokens_per_chunk,
        x.stride(0), x.stride(1), dy.stride(0), dy.stride(1), g.stride(0), g.stride(1), SILU=silu,
        BLOCK_N=t['grad_block_n'], BLOCK_C=t['grad_block_c'], num_warps=t['grad_warps'])
    dw, db = tap_gradients(part, b, t['grad_block_c'], weight)
    dx = _tap_sum(g, height, width, weight, None, dy if residual else None, -1, False)
    return dx, dw, db


class DepthwiseConvFunction(torch.autograd.Function):
    """Eager-mode autograd (no custom-op dispatch cost on every call)."""

    @staticmethod
    def forward(ctx, x, height, width, weight, bias, residual, silu):
        ctx.save_for_backward(x, weight, bias)
        ctx.options = (height, width, residual, silu)
        return _forward(x, height, width, weight, bias, residual, silu)

    @staticmethod
    def backward(ctx, dy):
        x, weight, bias = ctx.saved_tensors
        height, width, residual, silu = ctx.options
        dx, dw, db = _backward(dy, x, height, width, weight, bias, residual, silu)
        return dx, None, None, dw, db, None, None


@torch.library.custom_op('mlla_dense::depthwise_conv_fwd', mutates_args=())
def depthwise_conv_fwd(x: Tensor, height: int, width: int, weight: Tensor, bias: Tensor, residual: bool,
                       silu: bool) -> Tensor:
    return _forward(x, height, width, weight, bias, residual, silu)


@depthwise_conv_fwd.register_fake
def _(x, height, width, weight, bias, residual, silu):
    return x.new_empty(x.shape)


@torch.library.custom_op('mlla_dense::depthwise_conv_bwd', mutates_args=())
def depthwise_conv_bwd(dy: Tensor, x: Tensor, height: int, width: int, weight: Tensor, bias: Tensor,
                       residual: bool, silu: bool) -> Tuple[Tensor, Tensor, Tensor]:
    return _backward(dy, x, height, width, weight, bias, residual, silu)


@depthwise_conv_bwd.register_fake
def _(dy, x, height, width, weight, bias, residual, silu):
    return x.new_empty(x.shape), torch.empty_like(weight), torch.empty_like(bias)


def _setup_context(ctx, inputs, output):
    x, height, width, weight, bias, residual, silu = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.options = (height, width, residual, silu)


def _custom_op_backward(ctx, dy):
    x, weight, bias = ctx.saved_tensors
    height, width, residual, silu = ctx.options
    dx, dw, db = depthwise_conv_bwd(dy, x, height, width, weight, bias, residual, silu)
    return dx, None, None, dw, db, None, None


depthwise_conv_fwd.register_autograd(_custom_op_backward, setup_context=_setup_context)


def depthwise_conv_triton(x, hw_shape, weight, bias, residual, activation) -> Tensor:
    """The Triton path: custom op while torch.compile traces, autograd.Function otherwise."""
    h, w = hw_shape
    silu = activation == 'silu'
    if torch.compiler.is_compiling():
        return depthwise_conv_fwd(x, h, w, weight, bias, residual, silu)
    return DepthwiseConvFunction.apply(x, h, w, weight, bias, residual, silu)
