"""The elementwise steps in plain PyTorch: the specification, the CPU path and the test oracle. Each is written
as the ops of the MLLA block that it stands for, so it rounds where they round."""
import torch
import torch.nn.functional as F

from .block_matrix import BlockMatrix


def silu_gate_reference(x, g):
    return x * F.silu(g)


def silu_gate_backward_reference(dy, x, g):
    """(dx, dg) as autograd of ``x * F.silu(g)`` with SiLU recomputed (models/layers/silu_gate.py)."""
    return dy * F.silu(g), torch.ops.aten.silu_backward(dy * x, g)


def residual_add_reference(res, y, keep=None, keep_prob=1.0):
    """res + y, or res + mmcv's DropPath of y: ``y.div(keep_prob) * keep`` per sample (keep: 0 or 1, (B,))."""
    if keep is not None:
        y = y.div(keep_prob) * keep.to(y.dtype).view(-1, *([1] * (y.dim() - 1)))
    return res + y


def drop_path_grad_reference(d, keep, keep_prob, dtype):
    """The gradient of y in ``res + y.div(keep_prob) * keep``, for d the gradient of the sum."""
    return (d.to(dtype) * keep.to(dtype).view(-1, *([1] * (d.dim() - 1)))).div(keep_prob)


def gelu_reference(a, dh=None):
    """gelu(a), and with dh also gelu's backward (dh * gelu'(a)): (h, da)."""
    h = F.gelu(a)
    if dh is None:
        return h
    return h, torch.ops.aten.gelu_backward(dh, a)


def pack_reference(pieces, dtype):
    """The pieces (tensors or BlockMatrix) flattened, cast to ``dtype`` and concatenated."""
    return torch.cat([(p.dense(dtype) if isinstance(p, BlockMatrix) else p.to(dtype)).reshape(-1) for p in pieces])


def cast_each_reference(tensors, dtype):
    """Each tensor cast to ``dtype``, keeping its strides."""
    return [t.to(dtype) for t in tensors]
