"""Products of a backbone's blocks on weights cast once per forward, for torch.compile under autocast.

Compiled op by op under autocast, each Linear casts its weight and its bias to the autocast dtype, and its
backward casts the weight's gradient back: Inductor makes each cast a kernel of its own (it cannot fuse them
into the products), and recomputed branches cast again, about 24 launches per MLLA block. Here the backbone casts
every block's product weights with one foreach copy (:func:`cast_all`: Inductor groups it into a few launches),
and :func:`cast_product` runs a product on those casts with the weights' float32 gradients taken straight from
the products (as the eager fused block does, product_grads.py), so no cast remains inside the blocks. Their bias
gradients come from our column-sum kernel, traced: one launch each, where Inductor splits the sum in two.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mlla_dense.kernels.elementwise import traced_column_sums
from .product_grads import weight_grad


def cast_all(tensors: Sequence[Tensor], dtype: torch.dtype) -> List[Tensor]:
    """Each tensor cast to ``dtype``, without gradient, in one foreach copy."""
    with torch.no_grad():
        casts = [torch.empty_like(t, dtype=dtype) for t in tensors]
        torch._foreach_copy_(casts, [t.detach() for t in tensors])
    return casts


class _CastProduct(torch.autograd.Function):
    """x W^T + b on (W, b)'s casts; W and b are the row-wise concatenations of the pieces given after them."""

    @staticmethod
    def forward(ctx, x, weight_cast, bias_cast, num_weights, *pieces):
        ctx.save_for_backward(x, weight_cast)
        ctx.rows = [w.shape[0] for w in pieces[:num_weights]]
        ctx.with_bias = bias_cast is not None
        return F.linear(x, weight_cast, bias_cast)

    @staticmethod
    def backward(ctx, grad):
        x, weight_cast = ctx.saved_tensors
        with torch.autocast(x.device.type, enabled=False):  # the products' own dtypes, float32 weight gradients
            grad_x = grad @ weight_cast
            grads = list(weight_grad(grad, x).split(ctx.rows))
            if ctx.with_bias:
                grads += traced_column_sums(grad).split(ctx.rows)
        return grad_x, None, None, None, *grads


def cast_product(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Optional[Tensor]], weight_cast: Tensor,
                 bias_cast: Optional[Tensor]) -> Tensor:
    """``F.linear(x, cat(weights), cat(biases))`` computed on ``weight_cast`` and ``bias_cast``, those
    concatenations cast to x's dtype (:func:`cast_all`; ``bias_cast`` None for products without bias); the
    gradients of the weights and biases come out in float32."""
    x = x.to(weight_cast.dtype)
    if not torch.is_grad_enabled():
        return F.linear(x, weight_cast, bias_cast)
    pieces = list(weights) + (list(biases) if bias_cast is not None else [])
    return _CastProduct.apply(x, weight_cast, bias_cast, len(weights), *pieces)
