"""Autograd for the Triton selective scan. The forward saves its inputs plus the float32 state at the start of
every chunk, from which the backward rebuilds the states instead of storing all of them."""
import torch
from torch import Tensor

from .backward import selective_scan_backward
from .forward import selective_scan_forward


def _rows(t: Tensor) -> Tensor:
    """The kernels take any batch and channel strides but need a unit stride along the sequence."""
    return t if t.stride(-1) == 1 else t.contiguous()


class SelectiveScanFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, delta_softplus):
        u, delta, B, C = (_rows(t) for t in (u, delta, B, C))
        A, D, delta_bias = (t.contiguous() for t in (A, D, delta_bias))
        y, states = selective_scan_forward(u, delta, A, B, C, D, delta_bias, delta_softplus)
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, states)
        ctx.delta_softplus = delta_softplus
        return y

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, B, C, D, delta_bias, states = ctx.saved_tensors
        grads = selective_scan_backward(_rows(dy), u, delta, A, B, C, D, delta_bias, states, ctx.delta_softplus)
        return (*grads, None)


def selective_scan_triton(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True) -> Tensor:
    """The Triton path of :func:`selective_scan_reference` (same arguments, float32 (B, KD, L) output)."""
    batch, channels, length = u.shape
    if channels % B.shape[1] or A.shape != (channels, B.shape[2]) or C.shape != B.shape or delta.shape != u.shape:
        raise ValueError(f'selective scan shapes do not fit: u {tuple(u.shape)}, delta {tuple(delta.shape)}, '
                         f'A {tuple(A.shape)}, B {tuple(B.shape)}, C {tuple(C.shape)}')
    zeros = u.new_zeros(channels, dtype=torch.float32)
    return SelectiveScanFunction.apply(u, delta, A.float(), B, C, zeros if D is None else D.float(),
                                       zeros if delta_bias is None else delta_bias.float(), delta_softplus)
