"""MLLA linear attention in plain PyTorch: the specification, the CPU path and the test oracle.

Per head, with phi = elu + 1, R = 2D RoPE over the HxW token grid and N = H*W tokens::

    z   = 1 / (phi(q) . mean_n phi(k) + 1e-6)
    kv  = R(phi(k))^T @ v / N
    out = R(phi(q)) @ kv * z + LePE(v)

LePE is a 3x3 depthwise convolution (with bias) of v over the grid. RoPE rotates channel pairs
(x[2p], x[2p+1]) as complex numbers, over all C channels rather than per head: pair p < C/4 turns by
row * theta_p, pair p >= C/4 by col * theta_(p - C/4). Its cos/sin tables come factorized, one per grid
axis (see :func:`mlla_dense.models.layers.rope.rope_tables`). Everything is computed in float32 and the
result is returned in the dtype of ``qk``.
"""
import torch
import torch.nn.functional as F

EPS = 1e-6


def check_inputs(qk, v, rope_rows, rope_cols, num_heads, lepe_weight, lepe_bias):
    """Validate shapes shared by the reference and the kernels; returns (B, N, C, H, W)."""
    if qk.dim() != 3 or v.dim() != 3:
        raise ValueError(f'qk and v must be (B, N, 2C) and (B, N, C), got {tuple(qk.shape)} and {tuple(v.shape)}')
    b, n, c = v.shape
    if qk.shape != (b, n, 2 * c):
        raise ValueError(f'qk must be (B, N, 2C) = {(b, n, 2 * c)} for v of shape {tuple(v.shape)}, '
                         f'got {tuple(qk.shape)}')
    if c % num_heads or (c // num_heads) % 2 or c % 4:
        raise ValueError(f'{c} channels cannot be split into {num_heads} heads of even size with C % 4 == 0')
    h, w = rope_rows.shape[0], rope_cols.shape[0]
    if h * w != n:
        raise ValueError(f'RoPE tables are for a {h}x{w} grid but the input has {n} tokens')
    for name, table, length in (('rope_rows', rope_rows, h), ('rope_cols', rope_cols, w)):
        if table.shape != (length, c // 4, 2):
            raise ValueError(f'{name} must be ({length}, {c // 4}, 2), got {tuple(table.shape)}')
    if lepe_weight.shape != (c, 1, 3, 3) or lepe_bias.shape != (c,):
        raise ValueError(f'LePE must be a 3x3 depthwise conv over {c} channels, got weight '
                         f'{tuple(lepe_weight.shape)} and bias {tuple(lepe_bias.shape)}')
    return b, n, c, h, w


def apply_rope(x: torch.Tensor, rope_rows: torch.Tensor, rope_cols: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of ``x`` (B, H*W, C) by the 2D RoPE angles of their token's row and column."""
    b, n, c = x.shape
    h, w = rope_rows.shape[0], rope_cols.shape[0]
    rows = rope_rows[:, None].expand(h, w, c // 4, 2)
    cols = rope_cols[None, :].expand(h, w, c // 4, 2)
    table = torch.cat([rows, cols], dim=2).reshape(n, c // 2, 2)
    rotation = torch.complex(table[..., 0], table[..., 1])
    pairs = torch.view_as_complex(x.reshape(b, n, c // 2, 2).contiguous())
    return torch.view_as_real(pairs * rotation).reshape(b, n, c)


def lepe(v: torch.Tensor, hw_shape, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Locally-enhanced positional encoding: 3x3 depthwise conv of ``v`` (B, N, C) over its HxW grid."""
    b, n, c = v.shape
    grid = v.reshape(b, *hw_shape, c).permute(0, 3, 1, 2)
    return F.conv2d(grid, weight, bias, padding=1, groups=c).permute(0, 2, 3, 1).reshape(b, n, c)


def linear_attention_reference(qk, v, rope_rows, rope_cols, num_heads, lepe_weight, lepe_bias):
    """MLLA linear attention of ``qk`` (B, N, 2C: q then k, before phi) and ``v`` (B, N, C) -> (B, N, C)."""
    b, n, c, h, w = check_inputs(qk, v, rope_rows, rope_cols, num_heads, lepe_weight, lepe_bias)
    d = c // num_heads
    q, k = (F.elu(t) + 1.0 for t in qk.float().chunk(2, dim=-1))
    vf = v.float()
    rope_rows, rope_cols = rope_rows.float(), rope_cols.float()
    q_rot, k_rot = apply_rope(q, rope_rows, rope_cols), apply_rope(k, rope_rows, rope_cols)

    def heads(t):
        return t.reshape(b, n, num_heads, d).transpose(1, 2)

    k_mean = heads(k).mean(dim=2, keepdim=True)
    z = 1.0 / (heads(q) @ k_mean.transpose(-2, -1) + EPS)
    kv = heads(k_rot).transpose(-2, -1) @ heads(vf) / n
    out = (heads(q_rot) @ kv * z).transpose(1, 2).reshape(b, n, c)
    out = out + lepe(vf, (h, w), lepe_weight.float(), lepe_bias.float())
    return out.to(qk.dtype)
