"""An independent, deliberately plain MLLA forward pass written from the paper/official math.

It reads a state dict (official parameter names) and uses explicit per-head loops for the linear attention
and complex multiplication for RoPE, sharing no code with mlla_dense. Tests compare the package against it.
"""

import torch
import torch.nn.functional as F


def conv_bn(sd, prefix, x, stride=1, padding=0, groups=1, bn=True, relu=True):
    weight = sd[prefix + 'conv.weight']
    x = F.conv2d(x, weight, sd.get(prefix + 'conv.bias'), stride=stride, padding=padding, groups=groups)
    if bn:
        x = F.batch_norm(x, sd[prefix + 'norm.running_mean'], sd[prefix + 'norm.running_var'],
                         sd[prefix + 'norm.weight'], sd[prefix + 'norm.bias'], False, 0.0, 1e-5)
    return F.relu(x) if relu else x


def layer_norm(sd, prefix, x):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + 'weight'], sd[prefix + 'bias'], 1e-5)


def linear(sd, prefix, x):
    return F.linear(x, sd[prefix + 'weight'], sd.get(prefix + 'bias'))


def dwconv(sd, prefix, grid):
    """grid: (C, H, W) for one image."""
    c = grid.shape[0]
    return F.conv2d(grid[None], sd[prefix + 'weight'], sd[prefix + 'bias'], padding=1, groups=c)[0]


def rope_complex(x, h, w):
    """x: (H*W, C) of one image; 2D RoPE by complex multiplication, angles built with Python loops."""
    n, c = x.shape
    k_max = c // 4
    theta = [1.0 / (10000 ** (i / k_max)) for i in range(k_max)]
    angles = torch.empty(h, w, c // 2, dtype=torch.float64)
    for p in range(c // 2):
        if p < k_max:
            angles[:, :, p] = torch.arange(h, dtype=torch.float64)[:, None] * theta[p]
        else:
            angles[:, :, p] = torch.arange(w, dtype=torch.float64)[None, :] * theta[p - k_max]
    rot = torch.polar(torch.ones_like(angles), angles).reshape(n, c // 2)
    z = torch.complex(x[:, 0::2].double(), x[:, 1::2].double()) * rot
    out = torch.empty(n, c, dtype=torch.float64)
    out[:, 0::2], out[:, 1::2] = z.real, z.imag
    return out.to(x.dtype)


def linear_attention(sd, prefix, x, h, w, num_heads):
    """x: (N, C) tokens of one image."""
    n, c = x.shape
    qk = linear(sd, prefix + 'qk.', x)
    q, k = F.elu(qk[:, :c]) + 1, F.elu(qk[:, c:]) + 1
    q_rot, k_rot = rope_complex(q, h, w), rope_complex(k, h, w)
    d = c // num_heads
    out = torch.empty_like(x)
    for head in range(num_heads):
        sl = slice(head * d, (head + 1) * d)
        k_mean = k[:, sl].mean(0)
        kv = torch.zeros(d, d, dtype=x.dtype)
        for t in range(n):
            kv += torch.outer(k_rot[t, sl], x[t, sl])
        kv /= n
        z = 1.0 / (q[:, sl] @ k_mean + 1e-6)
        out[:, sl] = (q_rot[:, sl] @ kv) * z[:, None]
    lepe = dwconv(sd, prefix + 'lepe.', x.T.reshape(c, h, w)).reshape(c, n).T
    return out + lepe


def block(sd, prefix, x, h, w, num_heads):
    n, c = x.shape

    def grid_conv(name, t):
        return dwconv(sd, prefix + name, t.T.reshape(c, h, w)).reshape(c, n).T

    x = x + grid_conv('cpe1.', x)
    shortcut = x
    y = layer_norm(sd, prefix + 'norm1.', x)
    gate = F.silu(linear(sd, prefix + 'act_proj.', y))
    y = F.silu(grid_conv('dwc.', linear(sd, prefix + 'in_proj.', y)))
    y = linear_attention(sd, prefix + 'attn.', y, h, w, num_heads)
    x = shortcut + linear(sd, prefix + 'out_proj.', y * gate)
    x = x + grid_conv('cpe2.', x)
    y = layer_norm(sd, prefix + 'norm2.', x)
    y = linear(sd, prefix + 'mlp.fc2.', F.gelu(linear(sd, prefix + 'mlp.fc1.', y)))
    return x + y


def patch_merging(sd, prefix, x, h, w):
    n, c = x.shape
    grid = x.T.reshape(1, c, h, w)
    grid = F.pad(grid, (0, w % 2, 0, h % 2))
    grid = conv_bn(sd, prefix + 'conv.0.', grid, bn=False)
    grid = conv_bn(sd, prefix + 'conv.1.', grid, stride=2, padding=1, groups=grid.shape[1], bn=False)
    grid = conv_bn(sd, prefix + 'conv.2.', grid, relu=False)[0]
    return grid.reshape(grid.shape[0], -1).T, grid.shape[1], grid.shape[2]


def mlla_forward(sd, image, depths, num_heads):
    """image: (3, H, W) -> list of (C_i, H_i, W_i) stage outputs (normalized), eval mode."""
    h, w = image.shape[-2:]
    x = F.pad(image[None], (0, (4 - w % 4) % 4, 0, (4 - h % 4) % 4))
    x = conv_bn(sd, 'patch_embed.conv1.', x, stride=2, padding=1)
    x = conv_bn(sd, 'patch_embed.conv2.1.', conv_bn(sd, 'patch_embed.conv2.0.', x, padding=1),
                padding=1, relu=False) + x
    x = conv_bn(sd, 'patch_embed.conv3.0.', x, stride=2, padding=1)
    x = conv_bn(sd, 'patch_embed.conv3.1.', x, relu=False)[0]
    c, h, w = x.shape
    x = x.reshape(c, -1).T
    outs = []
    for i, depth in enumerate(depths):
        for j in range(depth):
            x = block(sd, f'layers.{i}.blocks.{j}.', x, h, w, num_heads[i])
        out = layer_norm(sd, f'norm{i}.', x)
        outs.append(out.T.reshape(-1, h, w))
        if i < len(depths) - 1:
            x, h, w = patch_merging(sd, f'layers.{i}.downsample.', x, h, w)
    return outs
