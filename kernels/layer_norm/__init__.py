"""LayerNorm of token channels: one public function, :func:`layer_norm`.

Reads 16-bit or float32 tokens, normalizes in float32 with float32 parameters and writes the dtype the next
layer consumes: under autocast that is the autocast dtype, so the official float32 LayerNorm + cast become one
pass that stores the input once (not a float32 copy) for the backward. Triton kernels on CUDA tensors (triton
ops under torch.compile), the PyTorch reference otherwise; ``MLLA_DENSE_BACKEND`` overrides (see
:mod:`mlla_dense.kernels.backend`).
"""
from ..backend import use_triton
from .reference import check_inputs, layer_norm_reference


def layer_norm(x, weight, bias, eps=1e-5, out_dtype=None):
    """LayerNorm over the last dim of ``x`` (..., C), computed in float32.

    Args:
        x: tokens (..., C), any float dtype.
        weight, bias: (C,) parameters (float32 in the models).
        eps: added to the variance.
        out_dtype: dtype of the result (default: x's dtype).

    Returns:
        (..., C) in ``out_dtype``.
    """
    out_dtype = out_dtype or x.dtype
    if not use_triton(x):
        return layer_norm_reference(x, weight, bias, eps, out_dtype)
    from .op import layer_norm_op
    return layer_norm_op(x, weight if weight.is_contiguous() else weight.contiguous(),
                         bias if bias.is_contiguous() else bias.contiguous(), float(eps), out_dtype)


__all__ = ['layer_norm', 'layer_norm_reference', 'check_inputs']
