"""SS2D, VMamba's 2D selective-scan mixer (forward type v05_noz, channel-first), official parameter names."""
import math

import torch
from torch import nn

from mlla_dense.kernels.selective_scan import NUM_PATHS, ss2d_scan
from .channel_first import LayerNorm2d, Linear2d


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
