"""Selective scan for VMamba's SS2D: one public function, :func:`ss2d_scan`.

It takes the (B, D, H, W) map and the per-position projections, runs the selective scan along the four
cross-scan paths and returns their merged sum on the grid. The scan runs as Triton kernels on CUDA (custom ops
under torch.compile) and as the PyTorch reference elsewhere (MLLA_DENSE_BACKEND overrides, see
:mod:`mlla_dense.kernels.backend`). The four paths share two sequences, the map's rows and its columns: the
reversed paths read them backwards (index arithmetic in the kernels), so only the column-major copy is made.
"""
import torch
import torch.nn.functional as F

from ..backend import use_triton
from .op import selective_scan_triton, ss2d_paths_triton
from .reference import selective_scan_reference, ss2d_paths_reference

NUM_PATHS = 4


def selective_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """Mamba's selective scan (see :mod:`.reference` for the math): Triton on CUDA, the reference otherwise."""
    scan = selective_scan_triton if use_triton(u) else selective_scan_reference
    return scan(u, delta, A, B, C, D, delta_bias, delta_softplus)


def ss2d_paths(xs, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """The four SS2D paths over rows and columns ``xs`` (B, 2, D, L); layout in :func:`ss2d_paths_reference`."""
    scan = ss2d_paths_triton if use_triton(xs) else ss2d_paths_reference
    return scan(xs, delta, A, B, C, D, delta_bias, delta_softplus)


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
    if k != NUM_PATHS:
        raise ValueError(f'SS2D has {NUM_PATHS} scan paths, x_proj_weight has {k}')
    n_state = A_logs.shape[1]
    rank = rn2 - 2 * n_state
    length = h * w
    xs = torch.stack([x.flatten(2), x.transpose(2, 3).flatten(2)], dim=1)   # (B, 2, D, L): rows, columns
    # Path k = 2 * reversed + sequence projects xs[:, sequence]: one grouped conv per sequence, then path order.
    proj = x_proj_weight.view(2, 2, rn2, d).transpose(0, 1).reshape(NUM_PATHS * rn2, d, 1)
    x_dbl = F.conv1d(xs.view(b, 2 * d, length), proj, groups=2)
    x_dbl = x_dbl.view(b, 2, 2, rn2, length).transpose(1, 2).reshape(b, NUM_PATHS, rn2, length)
    dts, bs, cs = torch.split(x_dbl, [rank, n_state, n_state], dim=2)
    dts = F.conv1d(dts.reshape(b, NUM_PATHS * rank, length), dt_projs_weight.reshape(NUM_PATHS * d, rank, 1),
                   groups=NUM_PATHS)
    ys = ss2d_paths(xs, dts, -torch.exp(A_logs.float()), bs, cs, Ds.float(), dt_projs_bias.reshape(-1).float(),
                    delta_softplus=True)
    rows, cols = ys.view(b, 2, 2, d, length).sum(1).unbind(1)
    return rows.view(b, d, h, w) + cols.view(b, d, w, h).transpose(2, 3)


__all__ = ['ss2d_scan', 'ss2d_paths', 'selective_scan', 'selective_scan_triton', 'selective_scan_reference',
           'ss2d_paths_triton', 'ss2d_paths_reference']
