"""An independent, deliberately plain VMamba (v05_noz, channel-first) forward pass from a state dict.

Written from the VMamba paper / official semantics with explicit loops: the four scan paths as explicit lists
of grid positions, the selective scan as a per-channel recurrence. Shares no code with mlla_dense.
"""

import torch
import torch.nn.functional as F


def ln2d(sd, prefix, x):
    return F.layer_norm(x.permute(1, 2, 0), x.shape[:1], sd[prefix + 'weight'], sd[prefix + 'bias'],
                        1e-5).permute(2, 0, 1)


def pointwise(sd, prefix, x, bias=True):
    """1x1 projection of x (C, H, W) with a Linear-shaped weight."""
    y = torch.einsum('oc,chw->ohw', sd[prefix + 'weight'], x)
    return y + sd[prefix + 'bias'][:, None, None] if bias else y


def paths(h, w):
    """Grid positions visited by the four scans: rows, columns, rows reversed, columns reversed."""
    rows = [(i, j) for i in range(h) for j in range(w)]
    cols = [(i, j) for j in range(w) for i in range(h)]
    return [rows, cols, rows[::-1], cols[::-1]]


def ss2d(sd, p, x):
    d_inner = sd[p + 'in_proj.weight'].shape[0]
    x = pointwise(sd, p + 'in_proj.', x, bias=False)
    kernel = sd[p + 'conv2d.weight']
    x = F.conv2d(x[None], kernel, sd.get(p + 'conv2d.bias'), padding=kernel.shape[-1] // 2, groups=d_inner)[0]
    x = F.silu(x)
    _, h, w = x.shape
    n_state = sd[p + 'A_logs'].shape[1]
    rank = sd[p + 'dt_projs_weight'].shape[2]
    out = torch.zeros_like(x)
    for k, path in enumerate(paths(h, w)):
        wx = sd[p + 'x_proj_weight'][k]            # (R + 2N, D)
        wdt = sd[p + 'dt_projs_weight'][k]         # (D, R)
        bias = sd[p + 'dt_projs_bias'][k]
        A = -torch.exp(sd[p + 'A_logs'][k * d_inner:(k + 1) * d_inner])  # (D, N)
        Dskip = sd[p + 'Ds'][k * d_inner:(k + 1) * d_inner]
        state = torch.zeros(d_inner, n_state, dtype=x.dtype)
        for (i, j) in path:
            u = x[:, i, j]
            proj = wx @ u
            dt = F.softplus(wdt @ proj[:rank] + bias)
            Bt, Ct = proj[rank:rank + n_state], proj[rank + n_state:]
            state = torch.exp(dt[:, None] * A) * state + (dt * u)[:, None] * Bt[None, :]
            out[:, i, j] += state @ Ct + Dskip * u
    out = ln2d(sd, p + 'out_norm.', out)
    return pointwise(sd, p + 'out_proj.', out, bias=False)


def vmamba_forward(sd, image, depths):
    """image (3, H, W) -> list of normalized stage outputs (C_i, H_i, W_i)."""
    x = F.conv2d(image[None], sd['patch_embed.0.weight'], sd['patch_embed.0.bias'], stride=2, padding=1)[0]
    x = F.gelu(ln2d(sd, 'patch_embed.2.', x))
    x = F.conv2d(x[None], sd['patch_embed.5.weight'], sd['patch_embed.5.bias'], stride=2, padding=1)[0]
    x = ln2d(sd, 'patch_embed.7.', x)
    outs = []
    for i, depth in enumerate(depths):
        for j in range(depth):
            p = f'layers.{i}.blocks.{j}.'
            x = x + ss2d(sd, p + 'op.', ln2d(sd, p + 'norm.', x))
            y = ln2d(sd, p + 'norm2.', x)
            y = pointwise(sd, p + 'mlp.fc2.', F.gelu(pointwise(sd, p + 'mlp.fc1.', y)))
            x = x + y
        outs.append(ln2d(sd, f'outnorm{i}.', x))
        if i < len(depths) - 1:
            p = f'layers.{i}.downsample.'
            x = F.conv2d(x[None], sd[p + '1.weight'], sd[p + '1.bias'], stride=2, padding=1)[0]
            x = ln2d(sd, p + '3.', x)
    return outs
