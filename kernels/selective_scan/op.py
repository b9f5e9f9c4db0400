"""The Triton selective scan as a :class:`~mlla_dense.kernels.kernel_op.KernelOp`. The forward saves its inputs
plus the float32 state at the start of every chunk, from which the backward rebuilds the states instead of
storing all of them.

Internally u is (B, u_groups, D, L) and group k of the scan reads ``u[:, k % u_groups]``; groups from
``reverse_from`` on run backwards (see :mod:`.forward`).
"""
from typing import Tuple

import torch
from torch import Tensor

from ..kernel_op import KernelOp, Plans
from ..strides import unit_last_stride
from .backward import BackwardPlan, selective_scan_backward
from .forward import ForwardPlan, selective_scan_forward

_forward_plans = Plans(ForwardPlan)
_backward_plans = Plans(BackwardPlan)


def forward(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, delta_bias: Tensor,
            delta_softplus: bool, reverse_from: int) -> Tuple[Tensor, Tensor]:
    """(y float32, chunk-start states)."""
    u, delta, B, C = unit_last_stride(u), unit_last_stride(delta), unit_last_stride(B), unit_last_stride(C)
    plan = _forward_plans((u, delta, A, B, C, D, delta_bias), (delta_softplus, reverse_from))
    return selective_scan_forward(plan, u, delta, A, B, C, D, delta_bias)


def backward(dy: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, delta_bias: Tensor,
             states: Tensor, delta_softplus: bool,
             reverse_from: int) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(du, ddelta, dA, dB, dC, dD, ddelta_bias). ``dy`` is y's gradient (B, KD, L), or (B, G, KD / K, L) where
    groups k and k + G get the same one (SS2D's paths on one sequence add up, ``dy[:, k % G]``)."""
    dy, u, delta = unit_last_stride(dy), unit_last_stride(u), unit_last_stride(delta)
    groups, per_group = B.shape[1], u.shape[2]
    if dy.dim() == 3:
        dy = dy.unflatten(1, (groups, per_group))
    elif dy.dim() != 4 or groups % dy.shape[1] or dy.shape[2:] != u.shape[2:] or dy.shape[0] != u.shape[0]:
        raise ValueError(f'the output gradient must be (B, KD, L) or (B, G, KD / K, L) with G dividing the '
                         f'{groups} groups; got {tuple(dy.shape)} for u {tuple(u.shape)}')
    B, C = unit_last_stride(B), unit_last_stride(C)
    plan = _backward_plans((dy, u, delta, A, B, C, D, delta_bias, states), (delta_softplus, reverse_from))
    return selective_scan_backward(plan, dy, u, delta, A, B, C, D, delta_bias, states)


selective_scan_op = KernelOp('selective_scan', forward, backward,
                             save=('u', 'delta', 'A', 'B', 'C', 'D', 'delta_bias'),
                             grads_for=('u', 'delta', 'A', 'B', 'C', 'D', 'delta_bias'),
                             options=('delta_softplus', 'reverse_from'))


def _scan(u, delta, A, B, C, D, delta_bias, delta_softplus, reverse_from) -> Tensor:
    """Missing D / delta_bias are zeros; A, D and delta_bias float32 and contiguous."""
    if D is None or delta_bias is None:
        zeros = u.new_zeros(delta.shape[1], dtype=torch.float32)
        D, delta_bias = zeros if D is None else D, zeros if delta_bias is None else delta_bias
    return selective_scan_op(u, delta, A.float().contiguous(), B, C, D.float().contiguous(),
                             delta_bias.float().contiguous(), delta_softplus, reverse_from)


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
