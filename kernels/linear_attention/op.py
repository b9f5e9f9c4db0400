"""The Triton path as torch custom ops (``mlla_dense::linear_attention_fwd`` / ``_bwd``) with autograd.

Custom ops keep torch.compile from breaking the graph at the kernels; the forward saves only its inputs
plus the per-head kv (B*heads, D, D) and mean(phi(k)) (B*heads, D) for the backward.
"""
from typing import Tuple

import torch
from torch import Tensor

from .backward import linear_attention_backward
from .forward import linear_attention_forward


def _contiguous_rows(t: Tensor) -> Tensor:
    """Kernels take any batch and token strides but need a unit channel stride."""
    return t if t.stride(-1) == 1 else t.contiguous()


@torch.library.custom_op('mlla_dense::linear_attention_fwd', mutates_args=())
def linear_attention_fwd(qk: Tensor, v: Tensor, rope_rows: Tensor, rope_cols: Tensor, num_heads: int,
                         lepe_weight: Tensor, lepe_bias: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    return linear_attention_forward(_contiguous_rows(qk), _contiguous_rows(v), rope_rows.contiguous(),
                                    rope_cols.contiguous(), num_heads, lepe_weight.contiguous(),
                                    lepe_bias.contiguous())


@linear_attention_fwd.register_fake
def _(qk, v, rope_rows, rope_cols, num_heads, lepe_weight, lepe_bias):
    b, n, c = v.shape
    d = c // num_heads
    return (qk.new_empty((b, n, c)), qk.new_empty((b * num_heads, d, d), dtype=torch.float32),
            qk.new_empty((b * num_heads, d), dtype=torch.float32))


@torch.library.custom_op('mlla_dense::linear_attention_bwd', mutates_args=())
def linear_attention_bwd(grad_out: Tensor, qk: Tensor, v: Tensor, rope_rows: Tensor, rope_cols: Tensor,
                         num_heads: int, lepe_weight: Tensor, kv: Tensor,
                         kmean: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    return linear_attention_backward(_contiguous_rows(grad_out), _contiguous_rows(qk), _contiguous_rows(v),
                                     rope_rows.contiguous(), rope_cols.contiguous(), num_heads,
                                     lepe_weight.contiguous(), kv, kmean)


@linear_attention_bwd.register_fake
def _(grad_out, qk, v, rope_rows, rope_cols, num_heads, lepe_weight, kv, kmean):
    return (torch.empty_like(qk, memory_format=torch.contiguous_format),
            torch.empty_like(v, memory_format=torch.contiguous_format),
            torch.empty_like(lepe_weight), lepe_weight.new_empty(lepe_weight.shape[0]))


def _setup_context(ctx, inputs, output):
    qk, v, rope_rows, rope_cols, num_heads, lepe_weight, _ = inputs
    _, kv, kmean = output
    ctx.save_for_backward(qk, v, rope_rows, rope_cols, lepe_weight, kv, kmean)
    ctx.num_heads = num_heads


def _backward(ctx, grad_out, grad_kv, grad_kmean):
    qk, v, rope_rows, rope_cols, lepe_weight, kv, kmean = ctx.saved_tensors
    dqk, dv, dw, db = linear_attention_bwd(grad_out, qk, v, rope_rows, rope_cols, ctx.num_heads,
                                           lepe_weight, kv, kmean)
    return dqk, dv, None, None, None, dw, db


linear_attention_fwd.register_autograd(_backward, setup_context=_setup_context)
