"""A module's weights in the autocast dtype as one autograd node: one launch casts them all in the forward and one
casts their gradients back in the backward (kernels/elementwise's cast_each), where autocast casts each weight,
and each gradient back, in a launch of its own. The values are autocast's."""
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


def autocast_weights(tensors: Sequence[Tensor]) -> List[Tensor]:
    """``tensors`` (one device, one floating dtype) as the ops under autocast would cast them: in the autocast
    dtype while autocast is on for their device, unchanged otherwise. Plain casts where the kernels do not run
    (CPU, torch.compile, which fuses casts itself)."""
    kind = tensors[0].device.type
    if not torch.is_autocast_enabled(kind):
        return list(tensors)
    dtype = torch.get_autocast_dtype(kind)
    if (torch.compiler.is_compiling() or not use_triton(tensors[0])
            or any(t.dtype != tensors[0].dtype or t.dtype == dtype for t in tensors)):
        return [t.to(dtype) for t in tensors]
    if not torch.is_grad_enabled():
        return cast_each(tensors, dtype)
    return list(_CastEach.apply(dtype, *tensors))
