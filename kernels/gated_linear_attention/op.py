"""Autograd for the Triton path: an autograd.Function in eager mode and torch custom ops
(``mlla_dense::gated_linear_attention_fwd`` / ``_bwd``) under torch.compile. The forward saves its inputs and
the float32 states entering every chunk (per direction), so the backward does not rebuild them; where no backward
follows it keeps none (``keep_states``). Directions travel as one comma-separated string and the grid as [H, W]
(custom-op argument types).
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from ..strides import unit_last_stride
from . import launch


def _inputs(q, k, v, log_decay):
    return tuple(unit_last_stride(t) for t in (q, k, v, log_decay))


def _grid(grid: List[int]):
    return tuple(grid) if grid else None


class GatedLinearAttentionFunction(torch.autograd.Function):
    """Eager-mode autograd (no custom-op dispatch cost on every call)."""

    @staticmethod
    def forward(ctx, q, k, v, log_decay, directions: str, grid: List[int]):
        inputs = _inputs(q, k, v, log_decay)
        o, z, states = launch.forward(*inputs, directions.split(','), _grid(grid))
        ctx.save_for_backward(*inputs, states)
        ctx.options = (directions, grid)
        ctx.set_materialize_grads(False)
        return o, z

    @staticmethod
    def backward(ctx, do, dz):
        return _gradients(ctx, do, dz, _launch_backward) + (None, None)


def _launch_backward(do, dz, q, k, v, log_decay, states, directions, grid):
    return launch.backward(do, dz, q, k, v, log_decay, states, directions.split(','), _grid(grid))


def _gradients(ctx, do, dz, backward):
    """(dq, dk, dv, dlog_decay) through ``backward`` (the launches, or their custom op); a missing dO (o unused)
    counts as zeros."""
    *inputs, states = ctx.saved_tensors
    if do is None:
        v = inputs[2]
        do = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
    return tuple(backward(unit_last_stride(do), dz, *inputs, states, *ctx.options))


@torch.library.custom_op('mlla_dense::gated_linear_attention_fwd', mutates_args=())
def gated_linear_attention_fwd(q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, directions: str,
                               grid: List[int], keep_states: bool = True) -> Tuple[Tensor, Tensor, Tensor]:
    """(o, z, states); without ``keep_states`` (no backward follows) states is empty."""
    o, z, states = launch.forward(*_inputs(q, k, v, log_decay), directions.split(','), _grid(grid),
                                  keep_states=keep_states)
    return o, z, states if keep_states else o.new_empty(0)


@gated_linear_attention_fwd.register_fake
def _(q, k, v, log_decay, directions, grid, keep_states=True):
    b, n, h, _ = q.shape
    lay = launch.Layout(q, v, log_decay.dim() == 4)
    f32 = dict(dtype=torch.float32)
    states = (len(directions.split(',')), b * h, lay.num_chunks(n), lay.state_size) if keep_states else (0,)
    return (q.new_empty((b, n, h, v.shape[-1]), **f32), q.new_empty((b, n, h), **f32), q.new_empty(states, **f32))


@torch.library.custom_op('mlla_dense::gated_linear_attention_bwd', mutates_args=())
def gated_linear_attention_bwd(do: Tensor, dz: Optional[Tensor], q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor,
                               states: Tensor, directions: str,
                               grid: List[int]) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    return _launch_backward(do, dz, q, k, v, log_decay, states, directions, grid)


@gated_linear_attention_bwd.register_fake
def _(do, dz, q, k, v, log_decay, states, directions, grid):
    return tuple(torch.empty_like(t) for t in (q, k, v, log_decay))


def _setup_context(ctx, inputs, output):
    q, k, v, log_decay, directions, grid, *_ = inputs
    ctx.save_for_backward(q, k, v, log_decay, output[2])
    ctx.options = (directions, grid)


def _custom_op_backward(ctx, do, dz, grad_states):
    return _gradients(ctx, do, dz, gated_linear_attention_bwd) + (None, None, None)


gated_linear_attention_fwd.register_autograd(_custom_op_backward, setup_context=_setup_context)


def gated_linear_attention_triton(q, k, v, log_decay, directions, grid) -> Tuple[Tensor, Tensor]:
    """The Triton path: custom op while torch.compile traces, autograd.Function where a backward may follow, the
    forward alone (no states kept) otherwise."""
    args = (q, k, v, log_decay, ','.join(directions), list(grid) if grid is not None else [])
    backward_follows = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, log_decay))
    if torch.compiler.is_compiling():
        return gated_linear_attention_fwd(*args, backward_follows)[:2]
    if not backward_follows:
        return launch.forward(*_inputs(q, k, v, log_decay), directions, grid, keep_states=False)[:2]
    return GatedLinearAttentionFunction.apply(*args)
