"""The token mixer of the linear-attention design space (Han et al., "Demystify Mamba in Vision: A Linear
Attention Perspective", NeurIPS 2024): linear attention and Mamba's selective scan as one formula with switches.
"""
import torch
import torch.nn.functional as F
from torch import nn

from mlla_dense.kernels.depthwise_conv import depthwise_conv
from mlla_dense.kernels.gated_linear_attention import gated_linear_attention
from mlla_dense.kernels.linear_attention import linear_attention
from mlla_dense.kernels.linear_attention.reference import apply_rope
from .forget_gate import build_forget_gate
from .input_gate import InputGate

SCANS = {'raster': ('rows',), 'four_directions': ('rows', 'rows_reversed', 'columns', 'columns_reversed')}
EPS = 1e-6


class DesignSpaceMixer(nn.Module):
    """Linear attention with Mamba's designs as switches, over the tokens x_1..x_N of an H x W grid.

    Per head (``num_heads`` heads, queries and keys of ``key_dim`` channels, values of C / num_heads)::

        q_i = phi(W_q x_i),  k_i = phi(W_k x_i)           phi = elu + 1; rope: q'_i, k'_i = RoPE(q_i), RoPE(k_i)
        v_i = u_i * Delta_i                               input_gate: Delta_i = softplus(W_D x_i + b), else 1
        y_i = sum_j (q'_i . (k'_j * m_ij)) v_j  /  [sum_j q_i . (k_j * m_ij) + eps]    (the bracket: attn_norm)
              + LePE(v)_i + D * v_i                       lepe: 3x3 depthwise conv of v; shortcut: learned D

    u is the value input (x itself unless the block gives another). m_ij is the forget gate's mask:

    - forget_gate 'none': m_ij = 1 / N, attention over all tokens (the 1 / N cancels in the normalization and
      makes an average without it): MLLA's linear attention;
    - a forget gate: m_ij = sum over the scan directions r of [j is i or precedes it along r] * prod a_t over
      the tokens t after j up to i along r, a_t from :mod:`.forget_gate` ('retnet', 'mamba2': one decay per
      head; 'gla': one per key channel, a vector multiplying k_j). ``scan`` 'raster' is one direction (the
      tokens in row-major order, causal), 'four_directions' the four of VMamba's SS2D (rows and columns, both
      ways).

    Mamba's selective scan is this mixer with an input gate, a data-dependent forget gate along the scan, the
    shortcut, no normalization and one head whose keys have the state size as width (here ``key_dim``); MLLA
    is forget_gate 'none' with RoPE and LePE, normalized, multi-head. Without RoPE the numerator uses q, k as
    the normalizer does; with RoPE only the numerator is rotated (as MLLA does: the rotated products can be
    negative, the normalizer stays positive).

    Args:
        dim (int): channels C of x and of the values.
        num_heads (int): heads; 1 is Mamba's single head.
        key_dim (int, optional): query/key channels per head. Default C / num_heads.
        input_gate (bool), forget_gate (str), scan (str), shortcut (bool), attn_norm (bool): the switches above.
        rope (bool), lepe (bool): positional encodings inside the mixer (2D RoPE over all query/key channels,
            as in MLLA; LePE on the values).
        qkv_bias (bool): bias of the query/key projection ``qk``.
    """

    def __init__(self, dim: int, num_heads: int, key_dim=None, input_gate: bool = False,
                 forget_gate: str = 'none', scan: str = 'four_directions', shortcut: bool = False,
                 attn_norm: bool = True, rope: bool = False, lepe: bool = False, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim={dim} cannot be split into {num_heads} heads')
        if scan not in SCANS:
            raise ValueError(f'scan={scan!r} is not one of {", ".join(SCANS)}')
        self.dim, self.num_heads = dim, num_heads
        self.key_dim = key_dim or dim // num_heads
        if rope and (num_heads * self.key_dim) % 4:
            raise ValueError(f'RoPE needs query/key widths divisible by 4, got {num_heads} x {self.key_dim}')
        self.directions = SCANS[scan]
        self.attn_norm, self.rope = attn_norm, rope
        self.qk = nn.Linear(dim, 2 * num_heads * self.key_dim, bias=qkv_bias)
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim) if lepe else None
        self.input_gate = InputGate(dim, dim) if input_gate else None
        self.forget_gate = build_forget_gate(forget_gate, dim, num_heads, self.key_dim)
        self.shortcut = nn.Parameter(torch.ones(dim)) if shortcut else None
        # MLLA's switches run through MLLA's fused kernel (RoPE, normalization and LePE in one pass)
        self.mlla_kernel = (self.forget_gate is None and rope and self.lepe is not None and attn_norm
                            and self.key_dim == dim // num_heads and self.key_dim % 2 == 0)

    def forward(self, x: torch.Tensor, hw_shape, value=None) -> torch.Tensor:
        """x: (B, H*W, C) tokens of an ``hw_shape`` grid; value: the value input u (default x) -> (B, H*W, C)."""
        v = x if value is None else value
        if self.input_gate is not None:
            v = self.input_gate(x, v)
        if self.mlla_kernel:
            y = linear_attention(self.qk(x), v, hw_shape, self.num_heads, self.lepe.weight, self.lepe.bias)
        else:
            attend = self._global if self.forget_gate is None else self._gated
            y = attend(x, v, hw_shape)
            if self.lepe is not None:
                y = y + depthwise_conv(v, hw_shape, self.lepe.weight, self.lepe.bias)
        if self.shortcut is not None:
            y = y + v * self.shortcut.to(v.dtype)
        return y

    def _queries_keys(self, x, hw_shape):
        """phi(q), phi(k) (B, N, H*K) in float32 (float64 for float64 input) and their RoPE versions."""
        compute = torch.float64 if x.dtype == torch.float64 else torch.float32
        q, k = (F.elu(t) + 1.0 for t in self.qk(x).to(compute).chunk(2, dim=-1))
        if not self.rope:
            return q, k, q, k
        return q, k, apply_rope(q, hw_shape), apply_rope(k, hw_shape)

    def _global(self, x, v, hw_shape):
        b, n, _ = x.shape
        q, k, q_num, k_num = self._queries_keys(x, hw_shape)

        def heads(t):
            return t.reshape(b, n, self.num_heads, -1).transpose(1, 2)

        values = heads(v.to(q.dtype))
        out = heads(q_num) @ (heads(k_num).transpose(-2, -1) @ values / n)
        if self.attn_norm:
            out = out / (heads(q) @ heads(k).mean(dim=2, keepdim=True).transpose(-2, -1) + EPS)
        return out.transpose(1, 2).reshape(b, n, -1).to(x.dtype)

    def _gated(self, x, v, hw_shape):
        b, n, _ = x.shape
        q, k, q_num, k_num = self._queries_keys(x, hw_shape)
        log_decay = self.forget_gate(x).to(q.dtype)
        values = v
        if torch.is_autocast_enabled(x.device.type):
            q, k, q_num, k_num, values = self._autocast_operands(q, k, q_num, k_num, values)

        def heads(t):
            return t.unflatten(-1, (self.num_heads, -1))

        values = heads(values.to(q.dtype))
        out, norm = gated_linear_attention(heads(q_num), heads(k_num), values, log_decay, self.directions, hw_shape)
        if self.attn_norm:
            if self.rope:  # the normalizer of the unrotated queries and keys (it does not depend on v)
                _, norm = gated_linear_attention(heads(q), heads(k), values[..., :1], log_decay, self.directions,
                                                 hw_shape)
            out = out / (norm[..., None] + EPS)
        return out.flatten(2).to(x.dtype)

    def _autocast_operands(self, q, k, q_num, k_num, v):
        """Under autocast, the kernel's operands in the autocast dtype, as torch.matmul takes them in the attention
        without a forget gate (the kernel keeps its sums and chunk states in float32, the log decays stay
        float32)."""
        dtype = torch.get_autocast_dtype(q.device.type)
        q, k = q.to(dtype), k.to(dtype)
        if self.rope:
            q_num, k_num = q_num.to(dtype), k_num.to(dtype)
        else:
            q_num, k_num = q, k
        return q, k, q_num, k_num, v.to(dtype)

    def extra_repr(self) -> str:
        return f'dim={self.dim}, num_heads={self.num_heads}, key_dim={self.key_dim}, directions={self.directions}'
