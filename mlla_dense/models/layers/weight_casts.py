"""A module's weights in the autocast dtype, cast together: autocast casts each weight, and each gradient back, in a
launch of its own. In eager mode one autograd node casts them all in one launch and their gradients back in another
(kernels/elementwise's cast_each); under torch.compile one cast of the weights laid end to end, which Inductor
fuses into one kernel, and the gradients' casts back into another. The values are autocast's."""
from typing import List, Sequence

import torch
from torch import Tensor

from mlla_dense.kernels.backend import use_triton
from mlla_dense.kernels.elementwise import cast_each, is_dense


class _CastEach(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dtype, *tensors):
        ctx.source_dtype = tensors[0].dtype
        return tuple(cast_each(tensors, dtype))

    @staticmethod
    def backward(ctx, *grads):
        present = [i for i, g in enumerate(grads) if g is not None]
        out = [None] * len(grads)
        if present:
            casts = cast_each([g if is_dense(g) else g.contiguous() for g in (grads[i] for i in present)],
                              ctx.source_dtype)
            for i, grad in zip(present, casts):
                out[i] = grad
        return (None, *out)


def _cast_end_to_end(tensors: Sequence[Tensor], dtype: torch.dtype) -> List[Tensor]:
    """Each tensor cast to ``dtype``, contiguous, as views of one cast of all of them laid end to end. Traced, the
    concatenation and the cast are one pointwise kernel (for up to Inductor's ``max_pointwise_cat_inputs``
    pieces, 8), as are the gradients' concatenation and cast back. Contiguous, because Inductor then fuses the
    layout its convolutions want into that kernel; views keeping each tensor's strides cost more launches."""
    flat = torch.cat([t.reshape(-1) for t in tensors]).to(dtype)
    return [piece.view(t.shape) for piece, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def autocast_weights(tensors: Sequence[Tensor]) -> List[Tensor]:
    """``tensors`` (one device, one floating dtype) as the ops under autocast would cast them: in the autocast
    dtype while autocast is on for their device, unchanged otherwise. Cast end to end under torch.compile; plain
    casts where the kernels do not run (CPU)."""
    kind = tensors[0].device.type
    if not torch.is_autocast_enabled(kind):
        return list(tensors)
    dtype = torch.get_autocast_dtype(kind)
    if any(t.dtype != tensors[0].dtype or t.dtype == dtype for t in tensors):
        return [t.to(dtype) for t in tensors]
    if torch.compiler.is_compiling():
        return _cast_end_to_end(tensors, dtype)
    if not use_triton(tensors[0]):
        return [t.to(dtype) for t in tensors]
    if not torch.is_grad_enabled():
        return cast_each(tensors, dtype)
    return list(_CastEach.apply(dtype, *tensors))
