"""MLLA linear attention in plain PyTorch: the specification, the CPU path and the test oracle.

Per head, with phi = elu + 1, R = 2D RoPE over the HxW token grid and N = H*W tokens::

    z   = 1 / (phi(q) . mean_n phi(k) + 1e-6)
    kv  = R(phi(k))^T @ v / N
    out = R(phi(q)) @ kv * z + LePE(v)

LePE is a 3x3 depthwise convolution (with bias) of v over the grid. RoPE rotates channel pairs over all C
channels rather than per head (see :mod:`.rope`). Everything is computed in float32 and the result is
returned in the dtype of ``qk``.
"""
import torch
import torch.nn.functional as F

from .rope import rope_tables

EPS = 1e-6


def check_inputs(qk, v, hw_shape, num_heads, lepe_weight, lepe_bias):
    """Validate shapes shared by the reference and the kernels; returns (B, N, C, H, W)."""
    if qk.dim() != 3 or v.dim() != 3:
        raise ValueError(f'qk and v must be (B, N, 2C) and (B, N, C), got {tuple(qk.shape)} and {tuple(v.shape)}')
    b, n, c = v.shape
    if qk.shape != (b, n, 2 * c):
        raise ValueError(f'qk must be (B, N, 2C) = {(b, n, 2 * c)} for v of shape {tuple(v.shape)}, '
                         f'got {tuple(qk.shape)}')
    if c % num_heads or (c // num_heads) % 2 or c % 4:
        raise ValueError(f'{c} channels cannot be split into {num_heads} heads of even size with C % 4 == 0')
    h, w = hw_shape
    if h * w != n:
        raise ValueError(f'a {h}x{w} grid has {h * w} tokens but the input has {n}')
    if lepe_weight.shape != (c, 1, 3, 3) or lepe_bias.shape != (c,):
        raise ValueError(f'LePE must be a 3x3 depthwise conv over {c} channels, got weight '
                         f'{tuple(lepe_weight.shape)} and bias {tuple(lepe_bias.shape)}')
    return b, n, c, h, w


def apply_rope(x: torch.Tensor, hw_shape) -> torch.Tensor:
    """2D RoPE of tokens ``x`` (B, H*W, C) on an ``hw_shape`` grid (float32 or float64)."""
    b, n, c = x.shape
    h, w = hw_shape
    cos, sin = (t.to(x.dtype) for t in rope_tables(h, w, c, x.device))
    cos = (cos[:h, None] + cos[None, h:]).reshape(n, c)
    sin = (sin[:h, None] + sin[None, h:]).reshape(n, c)
    partner = x.reshape(b, n, c // 2, 2).flip(-1).reshape(b, n, c)
    return x * cos + partner * sin


def lepe(v: torch.Tensor, hw_shape, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Locally-enhanced positional encoding: 3x3 depthwise conv of ``v`` (B, N, C) over its HxW grid."""
    b, n, c = v.shape
    grid = v.reshape(b, *hw_shape, c).permute(0, 3, 1, 2)
    return F.conv2d(grid, weight, bias, padding=1, groups=c).permute(0, 2, 3, 1).reshape(b, n, c)


def linear_attention_reference(qk, v, hw_shape, num_heads, lepe_weight, lepe_bias):
    """MLLA linear attention of ``qk`` (B, N, 2C: q then k, before phi) and ``v`` (B, N, C) -> (B, N, C)."""
    b, n, c, h, w = check_inputs(qk, v, hw_shape, num_heads, lepe_weight, lepe_bias)
    d = c // num_heads
    compute = torch.float64 if qk.dtype == torch.float64 else torch.float32
    q, k = (F.elu(t) + 1.0 for t in qk.to(compute).chunk(2, dim=-1))
    vf = v.to(compute)
    q_rot, k_rot = apply_rope(q, (h, w)), apply_rope(k, (h, w))

    def heads(t):
        return t.reshape(b, n, num_heads, d).transpose(1, 2)

    k_mean = heads(k).mean(dim=2, keepdim=True)
    z = 1.0 / (heads(q) @ k_mean.transpose(-2, -1) + EPS)
    kv = heads(k_rot).transpose(-2, -1) @ heads(vf) / n
    out = (heads(q_rot) @ kv * z).transpose(1, 2).reshape(b, n, c)
    out = out + lepe(vf, (h, w), lepe_weight.to(compute), lepe_bias.to(compute))
    return out.to(qk.dtype)
