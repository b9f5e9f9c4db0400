"""``x * SiLU(a)``, the gate of the MLLA block, storing only x and a for the backward.

Autograd of the two plain ops would also store SiLU(a), a third token-sized tensor per block; here it is
recomputed in the backward (one elementwise pass). Values and gradients equal those of ``x * F.silu(a)``.
"""
import torch
import torch.nn.functional as F


class _SiluGate(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, a):
        ctx.save_for_backward(x, a)
        return x * F.silu(a)

    @staticmethod
    def backward(ctx, grad):
        x, a = ctx.saved_tensors
        grad_x = grad * F.silu(a) if ctx.needs_input_grad[0] else None
        grad_a = torch.ops.aten.silu_backward(grad * x, a) if ctx.needs_input_grad[1] else None
        return grad_x, grad_a


def silu_gate(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``x * SiLU(a)`` (same shapes); stores x and a, not SiLU(a)."""
    if x.shape != a.shape:
        raise ValueError(f'silu_gate needs equal shapes, got {tuple(x.shape)} and {tuple(a.shape)}')
    return _SiluGate.apply(x, a)
