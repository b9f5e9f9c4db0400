"""Mamba's selective scan, and the four paths of VMamba's SS2D: :func:`selective_scan`, :func:`ss2d_paths`.

The scan runs as Triton kernels on CUDA (triton ops under torch.compile) and as the PyTorch reference elsewhere
(MLLA_DENSE_BACKEND overrides, see :mod:`mlla_dense.kernels.backend`). The four SS2D paths share two
sequences, a map's rows and its columns: the reversed paths read them backwards (index arithmetic in the
kernels), so no reversed copies are made.
"""
from ..backend import use_triton
from .op import selective_scan_triton, ss2d_paths_triton
from .reference import selective_scan_reference, ss2d_paths_reference


def selective_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """Mamba's selective scan (see :mod:`.reference` for the math): Triton on CUDA, the reference otherwise."""
    scan = selective_scan_triton if use_triton(u) else selective_scan_reference
    return scan(u, delta, A, B, C, D, delta_bias, delta_softplus)


def ss2d_paths(xs, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """The four SS2D paths over rows and columns ``xs`` (B, 2, D, L); layout in :func:`ss2d_paths_reference`."""
    scan = ss2d_paths_triton if use_triton(xs) else ss2d_paths_reference
    return scan(xs, delta, A, B, C, D, delta_bias, delta_softplus)


__all__ = ['ss2d_paths', 'selective_scan', 'selective_scan_triton', 'selective_scan_reference',
           'ss2d_paths_triton', 'ss2d_paths_reference']
