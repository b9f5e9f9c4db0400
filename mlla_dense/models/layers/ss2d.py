"""SS2D, VMamba's 2D selective-scan mixer (forward type v05_noz), on channel-last tokens, official parameter names.

The official model runs channel-first (1x1 convolutions, LayerNorm2d); the same math on (B, H, W, C) tokens
makes the projections plain matrix products and lets LayerNorm and the depthwise convolution + SiLU run as the
Triton token kernels, without the layout changes cuDNN makes around 1x1 convolutions of channel-first maps.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from mlla_dense.kernels.depthwise_conv import depthwise_conv
from mlla_dense.kernels.layer_norm import layer_norm
from mlla_dense.kernels.selective_scan import ss2d_paths
from .channel_first import LayerNorm2d, Linear2d

NUM_PATHS = 4


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype products of ``x`` run in: the autocast dtype under autocast, else x's."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


class SS2D(nn.Module):
    """in_proj -> depthwise conv -> SiLU -> four-path selective scan -> LayerNorm -> out_proj, on tokens.

    Args:
        d_model (int): input/output channels.
        d_state (int): SSM state size N.
        ssm_ratio (float): inner channels / d_model.
        dt_rank (int | 'auto'): rank R of the dt projection ('auto': ceil(d_model / 16)).
        d_conv (int): depthwise conv kernel size (3 runs as the Triton token kernel).
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
        """x: (B, H, W, C) tokens -> (B, H, W, C) in the compute dtype (the autocast dtype under autocast)."""
        b, h, w, _ = x.shape
        z = F.linear(x, self.in_proj.weight)
        if self.conv2d.kernel_size == (3, 3):
            u = depthwise_conv(z.reshape(b, h * w, -1), (h, w), self.conv2d.weight, self.conv2d.bias,
                               activation='silu').view(z.shape)
        else:
            u = self.act(self.conv2d(z.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
        y = ss2d_scan(u, self.x_proj_weight, self.dt_projs_weight, self.dt_projs_bias, self.A_logs, self.Ds)
        y = layer_norm(y, self.out_norm.weight, self.out_norm.bias, self.out_norm.eps, compute_dtype(x))
        return F.linear(y, self.out_proj.weight)


def ss2d_scan(u, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds):
    """SS2D core of VMamba (forward type v05_noz): four-path selective scan of tokens ``u`` (B, H, W, D).

    The paths are rows, columns, and both reversed; each path's projection of its positions to (dt, B, C) and
    dt's up-projection are batched matrix products over the two sequences, the scans run through
    :func:`~mlla_dense.kernels.selective_scan.ss2d_paths`, and the four outputs are summed back on the grid.

    Args:
        u: (B, H, W, D) tokens (after in_proj, depthwise conv and SiLU).
        x_proj_weight: (K=4, R + 2N, D) per-path projections to (dt, B, C).
        dt_projs_weight: (K, D, R) per-path dt up-projections; dt_projs_bias: (K, D).
        A_logs: (K*D, N) with A = -exp(A_logs); Ds: (K*D,) skip weights.

    Returns:
        (B, H, W, D) float32 tokens: the sum of the four paths' outputs.
    """
    b, h, w, d = u.shape
    k, rn2, _ = x_proj_weight.shape
    if k != NUM_PATHS:
        raise ValueError(f'SS2D has {NUM_PATHS} scan paths, x_proj_weight has {k}')
    n_state = A_logs.shape[1]
    rank = rn2 - 2 * n_state
    length = h * w
    xs = torch.stack([u.permute(0, 3, 1, 2).reshape(b, d, length), u.permute(0, 3, 2, 1).reshape(b, d, length)],
                     dim=1)                                                     # (B, 2, D, L): rows, columns
    # Path k = 2 * reversed + sequence projects xs[:, sequence]: one product per sequence, then path order.
    proj = x_proj_weight.view(2, 2, rn2, d).transpose(0, 1).reshape(2, 2 * rn2, d)
    x_dbl = torch.matmul(proj, xs).view(b, 2, 2, rn2, length).transpose(1, 2).reshape(b, NUM_PATHS, rn2, length)
    dts, bs, cs = torch.split(x_dbl, [rank, n_state, n_state], dim=2)
    dts = torch.matmul(dt_projs_weight, dts).view(b, NUM_PATHS * d, length)
    ys = ss2d_paths(xs, dts, -torch.exp(A_logs.float()), bs, cs, Ds.float(), dt_projs_bias.reshape(-1).float(),
                    delta_softplus=True)
    rows, cols = ys.view(b, 2, 2, d, length).sum(1).unbind(1)
    return (rows.view(b, d, h, w).permute(0, 2, 3, 1) + cols.view(b, d, w, h).permute(0, 3, 2, 1)).contiguous()
