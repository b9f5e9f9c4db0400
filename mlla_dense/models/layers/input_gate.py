"""Mamba's input gate as a switch of the linear-attention design space."""
import torch
import torch.nn.functional as F
from torch import nn


class InputGate(nn.Module):
    """v_t <- v_t * softplus(W x_t + b) per value channel: how much of token t enters the attention state
    (Mamba's step size Delta_t, which scales B_t x_t)."""

    def __init__(self, dim: int, value_dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, value_dim)

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return v * F.softplus(self.proj(x))
