"""Autograd for the Triton path, as a plain autograd.Function in eager mode and as torch custom ops
(``mlla_dense::linear_attention_fwd`` / ``_bwd``) under torch.compile, so that compiled graphs do not break
at the kernels. The forward saves only its inputs plus
``stats``: the per-head kv (block-diagonal matrices of head groups) and mean(phi(k)).
"""
from typing import Tuple

import torch
from torch import Tensor

from ..strides import unit_last_stride
from .backward import linear_attention_backward
from .forward import linear_attention_forward
from .launch import Layout, full_precision
from .rope import rope_tables


def _tables(height, width, *tensors):
    """RoPE tables for the kernels: float32 for float32 inputs, float16 when any input is 16-bit."""
    return rope_tables(height, width, tensors[-1].shape[-1], tensors[-1].device,
                       torch.float32 if full_precision(*tensors) else torch.float16)


def _forward(qk, v, height, width, num_heads, lepe_weight, lepe_bias):
    cos, sin = _tables(height, width, qk, v)
    return linear_attention_forward(unit_last_stride(qk), unit_last_stride(v), cos, sin, (height, width),
                                    num_heads, lepe_weight.contiguous(), lepe_bias.contiguous())


def _backward(grad_out, qk, v, height, width, num_heads, lepe_weight, stats):
    cos, sin = _tables(height, width, grad_out, qk, v)
    return linear_attention_backward(unit_last_stride(grad_out), unit_last_stride(qk), unit_last_stride(v), cos,
                                     sin, (height, width), num_heads, lepe_weight.contiguous(), stats)


class LinearAttentionFunction(torch.autograd.Function):
    """Eager-mode autograd (no custom-op dispatch cost on every call)."""

    @staticmethod
    def forward(ctx, qk, v, height, width, num_heads, lepe_weight, lepe_bias):
        out, stats = _forward(qk, v, height, width, num_heads, lepe_weight, lepe_bias)
        ctx.save_for_backward(qk, v, lepe_weight, stats)
        ctx.shape = (height, width, num_heads)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        qk, v, lepe_weight, stats = ctx.saved_tensors
        dqk, dv, dw, db = _backward(grad_out, qk, v, *ctx.shape, lepe_weight, stats)
        return dqk, dv, None, None, None, dw, db


@torch.library.custom_op('mlla_dense::linear_attention_fwd', mutates_args=())
def linear_attention_fwd(qk: Tensor, v: Tensor, height: int, width: int, num_heads: int, lepe_weight: Tensor,
                         lepe_bias: Tensor) -> Tuple[Tensor, Tensor]:
    return _forward(qk, v, height, width, num_heads, lepe_weight, lepe_bias)


@linear_attention_fwd.register_fake
def _(qk, v, height, width, num_heads, lepe_weight, lepe_bias):
    b, n, c = v.shape
    lay = Layout(c, num_heads, qk, v)
    return qk.new_empty((b, n, c)), qk.new_empty((b * lay.num_groups, lay.block_c ** 2 + lay.block_c),
                                                 dtype=torch.float32)


@torch.library.custom_op('mlla_dense::linear_attention_bwd', mutates_args=())
def linear_attention_bwd(grad_out: Tensor, qk: Tensor, v: Tensor, height: int, width: int, num_heads: int,
                         lepe_weight: Tensor, stats: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    return _backward(grad_out, qk, v, height, width, num_heads, lepe_weight, stats)


@linear_attention_bwd.register_fake
def _(grad_out, qk, v, height, width, num_heads, lepe_weight, stats):
    return (qk.new_empty(qk.shape), v.new_empty(v.shape), torch.empty_like(lepe_weight),
            lepe_weight.new_empty(lepe_weight.shape[0]))


def _setup_context(ctx, inputs, output):
    qk, v, height, width, num_heads, lepe_weight, _ = inputs
    ctx.save_for_backward(qk, v, lepe_weight, output[1])
    ctx.shape = (height, width, num_heads)


def _custom_op_backward(ctx, grad_out, grad_stats):
    qk, v, lepe_weight, stats = ctx.saved_tensors
    dqk, dv, dw, db = linear_attention_bwd(grad_out, qk, v, *ctx.shape, lepe_weight, stats)
    return dqk, dv, None, None, None, dw, db


linear_attention_fwd.register_autograd(_custom_op_backward, setup_context=_setup_context)


def linear_attention_triton(qk, v, hw_shape, num_heads, lepe_weight, lepe_bias) -> Tensor:
    """The Triton path: custom op while torch.compile traces, autograd.Function otherwise."""
    h, w = hw_shape
    if torch.compiler.is_compiling():
        return linear_attention_fwd(qk, v, h, w, num_heads, lepe_weight, lepe_bias)[0]
    return LinearAttentionFunction.apply(qk, v, h, w, num_heads, lepe_weight, lepe_bias)
