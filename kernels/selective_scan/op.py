"""Autograd for the Triton selective scan: a plain autograd.Function in eager mode and torch custom ops
(``mlla_dense::selective_scan_fwd`` / ``_bwd``) under torch.compile, so compiled graphs do not break at the
kernels. The forward saves its inputs plus the float32 state at the start of every chunk, from which the
backward rebuilds the states instead of storing all of them.

Internally u is (B, u_groups, D, L) and group k of the scan reads ``u[:, k % u_groups]``; groups from
``reverse_from`` on run backwards (see :mod:`.forward`).
"""
from typing import Tuple

import torch
import triton
from torch import Tensor

from ..strides import unit_last_stride
from .backward import selective_scan_backward
from .common import launch_config
from .forward import selective_scan_forward


def _forward(u, delta, A, B, C, D, delta_bias, delta_softplus, reverse_from):
    return selective_scan_forward(unit_last_stride(u), unit_last_stride(delta), A.contiguous(), unit_last_stride(B),
                                  unit_last_stride(C), D.contiguous(), delta_bias.contiguous(), delta_softplus,
                                  reverse_from)


def _backward(dy, u, delta, A, B, C, D, delta_bias, states, delta_softplus, reverse_from):
    return selective_scan_backward(unit_last_stride(dy), unit_last_stride(u), unit_last_stride(delta), A.contiguous(),
                                   unit_last_stride(B), unit_last_stride(C), D.contiguous(), delta_bias.contiguous(),
                                   states, delta_softplus, reverse_from)


class SelectiveScanFunction(torch.autograd.Function):
    """Eager-mode autograd (no custom-op dispatch cost on every call)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, delta_softplus, reverse_from):
        y, states = _forward(u, delta, A, B, C, D, delta_bias, delta_softplus, reverse_from)
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, states)
        ctx.options = (delta_softplus, reverse_from)
        return y

    @staticmethod
    def backward(ctx, dy):
        return (*_backward(dy, *ctx.saved_tensors, *ctx.options), None, None)


@torch.library.custom_op('mlla_dense::selective_scan_fwd', mutates_args=())
def selective_scan_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, delta_bias: Tensor,
                       delta_softplus: bool, reverse_from: int) -> Tuple[Tensor, Tensor]:
    return _forward(u, delta, A, B, C, D, delta_bias, delta_softplus, reverse_from)


@selective_scan_fwd.register_fake
def _(u, delta, A, B, C, D, delta_bias, delta_softplus, reverse_from):
    batch, _, per_group, length = u.shape
    channels, n_state = delta.shape[1], B.shape[2]
    n_chunks = triton.cdiv(length, launch_config(per_group, length, n_state)['BLOCK_L'])
    return (u.new_empty((batch, channels, length), dtype=torch.float32),
            u.new_empty((batch, channels, n_chunks, n_state), dtype=torch.float32))


@torch.library.custom_op('mlla_dense::selective_scan_bwd', mutates_args=())
def selective_scan_bwd(dy: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                       delta_bias: Tensor, states: Tensor, delta_softplus: bool,
                       reverse_from: int) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return _backward(dy, u, delta, A, B, C, D, delta_bias, states, delta_softplus, reverse_from)


@selective_scan_bwd.register_fake
def _(dy, u, delta, A, B, C, D, delta_bias, states, delta_softplus, reverse_from):
    return tuple(t.new_empty(t.shape) for t in (u, delta, A, B, C, D, delta_bias))


def _setup_context(ctx, inputs, output):
    *tensors, delta_softplus, reverse_from = inputs
    ctx.save_for_backward(*tensors, output[1])
    ctx.options = (delta_softplus, reverse_from)


def _custom_op_backward(ctx, dy, grad_states):
    return (*selective_scan_bwd(dy, *ctx.saved_tensors, *ctx.options), None, None)


selective_scan_fwd.register_autograd(_custom_op_backward, setup_context=_setup_context)


def _scan(u, delta, A, B, C, D, delta_bias, delta_softplus, reverse_from) -> Tensor:
    """Custom op while torch.compile traces, autograd.Function otherwise; missing D / delta_bias are zeros."""
    if D is None or delta_bias is None:
        zeros = u.new_zeros(delta.shape[1], dtype=torch.float32)
        D, delta_bias = zeros if D is None else D, zeros if delta_bias is None else delta_bias
    args = (u, delta, A.float(), B, C, D.float(), delta_bias.float(), delta_softplus, reverse_from)
    if torch.compiler.is_compiling():
        return selective_scan_fwd(*args)[0]
    return SelectiveScanFunction.apply(*args)


def selective_scan_triton(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True) -> Tensor:
    """The Triton path of :func:`.reference.selective_scan_reference` (same arguments, float32 (B, KD, L))."""
    batch, channels, length = u.shape
    groups = B.shape[1]
    if channels % groups or A.shape != (channels, B.shape[2]) or C.shape != B.shape or delta.shape != u.shape:
        raise ValueError(f'selective scan shapes do not fit: u {tuple(u.shape)}, delta {tuple(delta.shape)}, '
                         f'A {tuple(A.shape)}, B {tuple(B.shape)}, C {tuple(C.shape)}')
    return _scan(u.unflatten(1, (groups, channels // groups)), delta, A, B, C, D, delta_bias, delta_softplus,
                 reverse_from=groups)


def ss2d_paths_triton(xs, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True) -> Tensor:
    """The Triton path of :func:`.reference.ss2d_paths_reference`: the four paths read the two sequences of
    ``xs`` in place, the reversed ones backwards."""
    batch, _, d, length = xs.shape
    if (xs.shape[1] != 2 or B.shape[1] != 4 or delta.shape != (batch, 4 * d, length) or C.shape != B.shape
            or A.shape != (4 * d, B.shape[2])):
        raise ValueError(f'SS2D paths need xs (B, 2, D, L), delta (B, 4D, L), A (4D, N), B and C (B, 4, N, L); '
                         f'got xs {tuple(xs.shape)}, delta {tuple(delta.shape)}, A {tuple(A.shape)}, '
                         f'B {tuple(B.shape)}, C {tuple(C.shape)}')
    return _scan(xs, delta, A, B, C, D, delta_bias, delta_softplus, reverse_from=2)
