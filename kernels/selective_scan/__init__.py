"""Selective scan for VMamba's SS2D: one public function, :func:`ss2d_scan`.

It takes the (B, D, H, W) map and the per-position projections, runs the selective scan along the four
cross-scan paths and returns their merged sum on the grid. The scan itself runs as Triton kernels on CUDA
and as the PyTorch reference elsewhere (MLLA_DENSE_BACKEND overrides, see :mod:`mlla_dense.kernels.backend`);
the cross-scan and cross-merge are PyTorch copies for now.
"""
import torch

from ..backend import use_triton
from .op import selective_scan_triton
from .reference import cross_merge, cross_scan, selective_scan_reference


def selective_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """Mamba's selective scan (see :mod:`.reference` for the math): Triton on CUDA, the reference otherwise."""
    scan = selective_scan_triton if use_triton(u) else selective_scan_reference
    return scan(u, delta, A, B, C, D, delta_bias, delta_softplus)


def ss2d_scan(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds):
    """SS2D core of VMamba (forward type v05_noz): four-path selective scan of ``x`` (B, D, H, W).

    Args:
        x: (B, D, H, W) input map (after in_proj, depthwise conv and SiLU).
        x_proj_weight: (K=4, R + 2N, D) per-path projections to (dt, B, C).
        dt_projs_weight: (K, D, R) per-path dt up-projections; dt_projs_bias: (K, D).
        A_logs: (K*D, N) with A = -exp(A_logs); Ds: (K*D,) skip weights.

    Returns:
        (B, D, H, W) float32: the sum of the four paths' outputs on the grid.
    """
    b, d, h, w = x.shape
    k, rn2, _ = x_proj_weight.shape
    n_state = A_logs.shape[1]
    rank = rn2 - 2 * n_state
    length = h * w
    xs = cross_scan(x).reshape(b, k * d, length)
    x_dbl = torch.nn.functional.conv1d(xs, x_proj_weight.reshape(k * rn2, d, 1), groups=k).view(b, k, rn2, length)
    dts, bs, cs = torch.split(x_dbl, [rank, n_state, n_state], dim=2)
    dts = torch.nn.functional.conv1d(dts.reshape(b, k * rank, length), dt_projs_weight.reshape(k * d, rank, 1),
                                     groups=k)
    ys = selective_scan(xs, dts, -torch.exp(A_logs.float()), bs, cs, Ds.float(), dt_projs_bias.reshape(-1).float(),
                        delta_softplus=True)
    return cross_merge(ys.view(b, k, d, length), h, w).view(b, d, h, w)


__all__ = ['ss2d_scan', 'selective_scan', 'selective_scan_triton', 'selective_scan_reference', 'cross_scan',
           'cross_merge']
