"""SS2D, VMamba's 2D selective-scan mixer (forward type v05_noz, channel-first), official parameter names."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from mlla_dense.kernels.selective_scan import ss2d_paths
from .channel_first import LayerNorm2d, Linear2d

NUM_PATHS = 4


class SS2D(nn.Module):
    """in_proj -> depthwise conv -> SiLU -> four-path selective scan -> LayerNorm -> out_proj.

    Args:
        d_model (int): input/output channels.
        d_state (int): SSM state size N.
        ssm_ratio (float): inner channels / d_model.
        dt_rank (int | 'auto'): rank R of the dt projection ('auto': ceil(d_model / 16)).
        d_conv (int): depthwise conv kernel size.
        conv_bias (bool): bias of the depthwise conv.
    """

    def __init__(self, d_model: int, d_state: int = 1, ssm_ratio: float = 2.0, dt_rank='auto', d_conv: int = 3,
                 conv_bias: bool = False, dt_min: float = 0.001, dt_max: float = 0.1, dt_init_floor: float = 1e-4):
        super().__init__()
        d_inner = int(ssm_ratio * d_model)
        rank = math.ceil(d_model / 16) if dt_rank == 'auto' else int(dt_rank)
        self.d_state, self.dt_rank, self.d_inner = d_state, rank, d_inner
        self.in_proj = Linear2d(d_model, d_inner, bias=False)
        self.act = nn.SiLU()
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner, bias=conv_bias)
        bound = d_inner ** -0.5  # nn.Linear's default init, as the official per-path projections get
        self.x_proj_weight = nn.Parameter(torch.empty(NUM_PATHS, rank + 2 * d_state, d_inner).uniform_(-bound, bound))
        std = rank ** -0.5
        self.dt_projs_weight = nn.Parameter(torch.empty(NUM_PATHS, d_inner, rank).uniform_(-std, std))
        dt = torch.exp(torch.rand(NUM_PATHS, d_inner) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        self.dt_projs_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_logs = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32))
                                   .repeat(NUM_PATHS * d_inner, 1))
        self.Ds = nn.Parameter(torch.ones(NUM_PATHS * d_inner))
        self.out_norm = LayerNorm2d(d_inner)
        self.out_proj = Linear2d(d_inner, d_model, bias=False)

    def forward(self, x):
        """x: (B, C, H, W) -> (B, C, H, W)."""
        x = self.act(self.conv2d(self.in_proj(x)))
        y = ss2d_scan(x, self.x_proj_weight, self.dt_projs_weight, self.dt_projs_bias, self.A_logs, self.Ds)
        return self.out_proj(self.out_norm(y).to(x.dtype))


def ss2d_scan(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds):
    """SS2D core of VMamba (forward type v05_noz): four-path selective scan of ``x`` (B, D, H, W).

    The paths are rows, columns, and both reversed; the projections of each path's positions to (dt, B, C) and
    dt's up-projection run as grouped 1x1 convolutions over the two sequences, the scans through
    :func:`~mlla_dense.kernels.selective_scan.ss2d_paths`, and the four outputs are summed back on the grid.

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
