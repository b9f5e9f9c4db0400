"""The linear attention module of an MLLA block (parameter names as in the official code)."""
from typing import Optional

import torch
from torch import nn

from mlla_dense.kernels.linear_attention import linear_attention


class LinearAttention(nn.Module):
    """Multi-head linear attention with 2D RoPE and LePE over a token grid.

    q and k come from one linear layer ``qk``; v is the input itself. The math lives in
    :func:`mlla_dense.kernels.linear_attention.linear_attention` (Triton on CUDA, PyTorch elsewhere).

    Args:
        dim (int): channels C of the tokens.
        num_heads (int): attention heads; C / num_heads must be even.
        qkv_bias (bool): bias of the ``qk`` projection.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads or (dim // num_heads) % 2 or dim % 4:
            raise ValueError(f'dim={dim} must be divisible by 4 and split into {num_heads} heads of even size')
        self.dim = dim
        self.num_heads = num_heads
        self.qk = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, hw_shape, qk: Optional[torch.Tensor] = None,
                rope: Optional[tuple] = None) -> torch.Tensor:
        """x: (B, H*W, C) tokens of an ``hw_shape`` grid -> (B, H*W, C); ``qk``: ``self.qk(x)`` where the caller
        computed it already; ``rope``: the RoPE tables (rope.build_rope_tables) where the caller built them."""
        qk = self.qk(x) if qk is None else qk
        return linear_attention(qk, x, hw_shape, self.num_heads, self.lepe.weight, self.lepe.bias, rope)

    def extra_repr(self) -> str:
        return f'dim={self.dim}, num_heads={self.num_heads}'
