"""An independent, deliberately plain implementation of the design-space mixer's formula and blocks.

Reads a state dict, works on one image's tokens (N, C) in float64 and builds the forget gate's mask m_ij token
pair by token pair, walking each scan direction with Python loops; it shares no code with mlla_dense (RoPE,
convs, norms come from plain_mlla.py). Tests compare the package against it.
"""
import math

import torch
import torch.nn.functional as F

from plain_mlla import dwconv, layer_norm, linear, rope_complex


def scan_orders(h, w, scan):
    """Token index lists of the scan directions."""
    rows = [r * w + c for r in range(h) for c in range(w)]
    if scan == 'raster':
        return [rows]
    columns = [r * w + c for c in range(w) for r in range(h)]
    return [rows, rows[::-1], columns, columns[::-1]]


def decays(sd, prefix, x, kind, num_heads, key_dim):
    """Per-token decays a_t: (N, H, 1) for one decay per head, (N, H, K) for one per key channel."""
    n = x.shape[0]
    if kind == 'retnet':
        gamma = torch.tensor([1 - 2.0 ** (-5 - h) for h in range(num_heads)], dtype=x.dtype)
        return gamma[None, :, None].expand(n, num_heads, 1)
    if kind == 'mamba2':
        dt = F.softplus(x @ sd[prefix + 'dt_proj.weight'].T + sd[prefix + 'dt_bias'])
        return torch.exp(-dt * torch.exp(sd[prefix + 'A_log']))[:, :, None]
    hidden = x @ sd[prefix + 'proj.0.weight'].T
    gate = torch.sigmoid(hidden @ sd[prefix + 'proj.1.weight'].T + sd[prefix + 'proj.1.bias'])
    return (gate ** (1 / 16)).reshape(n, num_heads, key_dim)


def mask(a, orders, head):
    """m[i][j] (a tensor over key channels) = sum over directions of the decays passed from j to i."""
    n = a.shape[0]
    m = [[torch.zeros(a.shape[-1], dtype=a.dtype) for _ in range(n)] for _ in range(n)]
    for order in orders:
        for pos_i in range(n):
            weight = torch.ones(a.shape[-1], dtype=a.dtype)
            for pos_j in range(pos_i, -1, -1):
                j = order[pos_j]
                m[order[pos_i]][j] = m[order[pos_i]][j] + weight
                weight = weight * a[j, head]
    return m


def mixer(sd, prefix, x, h, w, num_heads, key_dim=None, input_gate=False, forget_gate='none', scan='four_directions',
          shortcut=False, attn_norm=True, rope=False, lepe=False, value=None):
    """The mixer's formula for tokens x (N, C) of an h x w grid (see DesignSpaceMixer's docstring)."""
    n, c = x.shape
    key_dim = key_dim or c // num_heads
    qk = linear(sd, prefix + 'qk.', x)
    q, k = F.elu(qk[:, :num_heads * key_dim]) + 1, F.elu(qk[:, num_heads * key_dim:]) + 1
    q_num, k_num = (rope_complex(q, h, w), rope_complex(k, h, w)) if rope else (q, k)
    v = x if value is None else value
    if input_gate:
        v = v * F.softplus(linear(sd, prefix + 'input_gate.proj.', x))
    dv = c // num_heads
    a = decays(sd, prefix + 'forget_gate.', x, forget_gate, num_heads, key_dim) if forget_gate != 'none' else None
    out = torch.zeros(n, c, dtype=x.dtype)
    for head in range(num_heads):
        ks, vs = slice(head * key_dim, (head + 1) * key_dim), slice(head * dv, (head + 1) * dv)
        if a is None:
            m = [[torch.full((1,), 1 / n, dtype=x.dtype) for _ in range(n)] for _ in range(n)]
        else:
            m = mask(a, scan_orders(h, w, scan), head)
        for i in range(n):
            numerator = sum((q_num[i, ks] * k_num[j, ks] * m[i][j]).sum() * v[j, vs] for j in range(n))
            if attn_norm:
                numerator = numerator / (sum((q[i, ks] * k[j, ks] * m[i][j]).sum() for j in range(n)) + 1e-6)
            out[i, vs] = numerator
    if lepe:
        out = out + dwconv(sd, prefix + 'lepe.', v.T.reshape(c, h, w)).reshape(c, n).T
    if shortcut:
        out = out + v * sd[prefix + 'shortcut']
    return out


def block(sd, prefix, x, h, w, kind, cpe, mixer_options):
    """One DesignSpaceBlock on tokens x (N, C)."""
    n, c = x.shape

    def grid_conv(name, t):
        return dwconv(sd, prefix + name, t.T.reshape(t.shape[1], h, w)).reshape(t.shape[1], n).T

    if cpe:
        x = x + grid_conv('cpe1.', x)
    y = layer_norm(sd, prefix + 'norm1.', x)
    if kind == 'transformer':
        mixed = mixer(sd, prefix + 'attn.', y, h, w, value=linear(sd, prefix + 'in_proj.', y), **mixer_options)
    else:
        u = F.silu(grid_conv('dwc.', linear(sd, prefix + 'in_proj.', y)))
        mixed = mixer(sd, prefix + 'attn.', u, h, w, **mixer_options) * F.silu(linear(sd, prefix + 'act_proj.', y))
    x = x + linear(sd, prefix + 'out_proj.', mixed)
    if kind == 'mamba-all':
        return x
    if cpe:
        x = x + grid_conv('cpe2.', x)
    y = layer_norm(sd, prefix + 'norm2.', x)
    return x + linear(sd, prefix + 'mlp.fc2.', F.gelu(linear(sd, prefix + 'mlp.fc1.', y)))


def bicubic_resize(table, h, w):
    """(C, H0, W0) -> (C, h, w), bicubic with a = -0.75 and half-pixel centres, border taps clamped."""
    c, h0, w0 = table.shape

    def taps(size_in, size_out):
        rows = []
        for o in range(size_out):
            src = (o + 0.5) * size_in / size_out - 0.5
            base = math.floor(src)
            weights = torch.zeros(size_in, dtype=table.dtype)
            for tap in range(-1, 3):
                d = abs(src - (base + tap))
                wgt = (1.25 * d - 2.25) * d * d + 1 if d <= 1 else ((-0.75 * d + 3.75) * d - 6) * d + 3
                weights[min(max(base + tap, 0), size_in - 1)] += wgt
            rows.append(weights)
        return torch.stack(rows)

    return torch.einsum('yh,chw,xw->cyx', taps(h0, h), table, taps(w0, w))
