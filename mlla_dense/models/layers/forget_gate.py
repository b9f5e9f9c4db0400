"""Forget gates of the linear-attention design space: per-token log decays log a_t <= 0 of the attention state.

With a forget gate the state of gated linear attention decays at every token, S_t = a_t S_(t-1) + k_t^T v_t
(:mod:`mlla_dense.kernels.gated_linear_attention`); the variants differ in what a_t depends on:

- ``retnet``: one fixed decay per head, a = 1 - 2^(-5 - h) for head h (RetNet), not learned;
- ``mamba2``: one data-dependent decay per head, log a_t = -softplus(w x_t + dt_bias) * exp(A_log) (Mamba-2);
- ``gla``: one data-dependent decay per key channel, log a_t = logsigmoid(W2 W1 x_t + b) / 16, W1 of rank 16
  (Gated Linear Attention).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

FORGET_GATES = ('none', 'retnet', 'mamba2', 'gla')


class FixedDecay(nn.Module):
    """RetNet's decay: log(1 - 2^(-5 - h)) for head h, the same at every token; (B, N, H). Kept in float64 (a
    float32 model casts it once per call) so that a float64 model is exact."""

    def __init__(self, num_heads: int):
        super().__init__()
        heads = torch.arange(num_heads, dtype=torch.float64)
        self.register_buffer('log_decay', torch.log1p(-2.0 ** (-5 - heads)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_decay.to(x.dtype).expand(*x.shape[:2], -1)


class ScalarDecay(nn.Module):
    """Mamba-2's decay: one per head and token, -softplus(dt_proj(x) + dt_bias) * exp(A_log); (B, N, H).

    A = exp(A_log) starts uniform in [1, 16] and the step softplus(dt_bias) log-uniform in [0.001, 0.1], as in
    Mamba-2."""

    def __init__(self, dim: int, num_heads: int, dt_min: float = 1e-3, dt_max: float = 0.1):
        super().__init__()
        self.dt_proj = nn.Linear(dim, num_heads, bias=False)
        dt = torch.exp(torch.rand(num_heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.empty(num_heads).uniform_(1, 16)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -F.softplus(self.dt_proj(x) + self.dt_bias) * torch.exp(self.A_log)


class ChannelDecay(nn.Module):
    """GLA's decay: one per key channel and token, logsigmoid(proj(x)) / 16 through a rank-16 projection;
    (B, N, H, K)."""
    temperature = 16

    def __init__(self, dim: int, num_heads: int, key_dim: int, rank: int = 16):
        super().__init__()
        self.num_heads, self.key_dim = num_heads, key_dim
        self.proj = nn.Sequential(nn.Linear(dim, rank, bias=False), nn.Linear(rank, num_heads * key_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_decay = F.logsigmoid(self.proj(x)) / self.temperature
        return log_decay.unflatten(-1, (self.num_heads, self.key_dim))


def build_forget_gate(kind: str, dim: int, num_heads: int, key_dim: int):
    """The forget gate named ``kind`` (one of FORGET_GATES) of a mixer on ``dim`` channels; None for 'none'."""
    if kind not in FORGET_GATES:
        raise ValueError(f'forget_gate={kind!r} is not one of {", ".join(FORGET_GATES)}')
    if kind == 'none':
        return None
    if kind == 'retnet':
        return FixedDecay(num_heads)
    if kind == 'mamba2':
        return ScalarDecay(dim, num_heads)
    return ChannelDecay(dim, num_heads, key_dim)
