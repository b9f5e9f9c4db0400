"""MLLA linear attention: one public function, :func:`linear_attention`.

Triton kernels (forward and backward; triton ops under torch.compile) on CUDA tensors, the PyTorch reference
otherwise; ``MLLA_DENSE_BACKEND`` overrides (see :mod:`mlla_dense.kernels.backend`).
"""
from ..backend import use_triton
from .reference import check_inputs, linear_attention_reference
from .rope import rope_tables, table_dtype


def linear_attention(qk, v, hw_shape, num_heads, lepe_weight, lepe_bias, rope=None):
    """MLLA linear attention with 2D RoPE and LePE.

    Args:
        qk: (B, N, 2C) output of the q/k projection (q first), before elu + 1.
        v: (B, N, C) values (the attention input), tokens of an H x W grid in row-major order.
        hw_shape: (H, W) with H * W = N.
        num_heads: heads; C / num_heads must be even.
        lepe_weight, lepe_bias: (C, 1, 3, 3) and (C,) of the depthwise LePE conv.
        rope: the RoPE tables (rope.build_rope_tables for the grid and channels, in rope.table_dtype of qk's
            dtype) where the caller built them (once for several calls, under torch.compile), or None.

    Returns:
        (B, N, C) in the dtype of ``qk``.
    """
    if not use_triton(qk):
        return linear_attention_reference(qk, v, hw_shape, num_heads, lepe_weight, lepe_bias)
    from .op import linear_attention_op, linear_attention_with_tables_op
    height, width = hw_shape
    lepe_weight = lepe_weight if lepe_weight.is_contiguous() else lepe_weight.contiguous()
    lepe_bias = lepe_bias if lepe_bias.is_contiguous() else lepe_bias.contiguous()
    if rope is not None:
        if rope[0].dtype != table_dtype(qk.dtype):
            raise ValueError(f'RoPE tables for {qk.dtype} inputs are {table_dtype(qk.dtype)}, got {rope[0].dtype}')
        return linear_attention_with_tables_op(qk, v, lepe_weight, lepe_bias, *rope, height, width, num_heads)
    return linear_attention_op(qk, v, lepe_weight, lepe_bias, height, width, num_heads)


__all__ = ['linear_attention', 'linear_attention_reference', 'rope_tables', 'check_inputs']
