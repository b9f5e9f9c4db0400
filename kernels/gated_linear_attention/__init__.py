"""Gated linear attention (the forget gate of the MLLA paper's design space): one public function,
:func:`gated_linear_attention`.

Chunked (SSD-style: exact products inside chunks of tokens, a state pass between them), forward and backward as
Triton kernels on CUDA tensors (custom ops under torch.compile), the PyTorch reference otherwise;
``MLLA_DENSE_BACKEND`` overrides (see :mod:`mlla_dense.kernels.backend`). The math: :mod:`.reference`.
"""
from ..backend import use_triton
from .reference import DIRECTIONS, check_inputs, gated_linear_attention_reference


def gated_linear_attention(q, k, v, log_decay, directions=('rows',), grid=None):
    """Gated linear attention's numerator and normalizer, summed over scan directions.

    Args:
        q, k: (B, N, H, K) queries and keys (feature map applied), tokens of a row-major grid.
        v: (B, N, H, V) values.
        log_decay: (B, N, H) (one decay per head) or (B, N, H, K) (one per key channel), log a_t <= 0.
        directions: any of 'rows', 'rows_reversed', 'columns', 'columns_reversed'.
        grid: (H, W) with H * W = N; needed by the column directions.

    Returns:
        (o (B, N, H, V), z (B, N, H)), float32 (float64 for float64 inputs on the reference path).
    """
    directions = tuple(directions)
    if not use_triton(q):
        return gated_linear_attention_reference(q, k, v, log_decay, directions, grid)
    check_inputs(q, k, v, log_decay, directions, grid)
    from .op import gated_linear_attention_triton
    return gated_linear_attention_triton(q, k, v, log_decay, directions, grid)


__all__ = ['gated_linear_attention', 'gated_linear_attention_reference', 'DIRECTIONS']
