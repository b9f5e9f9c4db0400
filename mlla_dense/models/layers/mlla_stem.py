"""The convolutional stem and the patch merging (downsampling) of MLLA; tokens leave them as (B, H*W, C)."""
import torch
import torch.nn.functional as F
from torch import nn

from .conv_bn_act import ConvBNAct
from .recompute import recomputed
from .weight_casts import autocast_weights


class Stem(nn.Module):
    """Image (B, 3, H, W) -> tokens (B, H/4 * W/4, C); pads H and W up to a multiple of 4 (right, bottom).

    conv3x3 s2 -> C/2, a residual pair of conv3x3, conv3x3 s2 -> 4C, conv1x1 -> C; BatchNorm everywhere,
    ReLU except after the second conv of the pair and the last conv; no conv biases.

    Runs channels-last (weights and activations): 2.3x faster than NCHW on an H100 in bf16 (the NCHW BatchNorm
    kernels dominate, benchmarks/NOTES.md), and the tokens leave as a view of the conv output without a copy.
    Under autocast the conv weights are cast together (:func:`autocast_weights`).
    """

    patch_size = 4

    def __init__(self, in_channels: int = 3, embed_dim: int = 96):
        super().__init__()
        half = embed_dim // 2
        self.conv1 = ConvBNAct(in_channels, half, 3, stride=2, padding=1, bias=False)
        self.conv2 = nn.Sequential(
            ConvBNAct(half, half, 3, padding=1, bias=False),
            ConvBNAct(half, half, 3, padding=1, bias=False, act=False))
        self.conv3 = nn.Sequential(
            ConvBNAct(half, embed_dim * 4, 3, stride=2, padding=1, bias=False),
            ConvBNAct(embed_dim * 4, embed_dim, 1, bias=False, act=False))
        self.to(memory_format=torch.channels_last)

    def forward(self, x):
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % self.patch_size, 0, -h % self.patch_size))
        x = x.contiguous(memory_format=torch.channels_last)
        convs = (self.conv1, *self.conv2, *self.conv3)
        w1, w2, w3, w4, w5 = autocast_weights([c.conv.weight for c in convs])
        x = self.conv1(x, w1)
        x = self.conv2[1](self.conv2[0](x, w2), w3) + x
        x = self.conv3[1](self.conv3[0](x, w4), w5)
        return x.flatten(2).transpose(1, 2), tuple(x.shape[-2:])


class PatchMerging(nn.Module):
    """Tokens (B, H*W, C) -> (B, ceil(H/2) * ceil(W/2), 2C); odd H or W is padded by one (right, bottom).

    conv1x1 C -> 8C (ReLU), depthwise conv3x3 s2 (ReLU), conv1x1 8C -> 2C (BatchNorm); convs with bias.
    With ``recompute_expansion`` the first two (no BatchNorm, so nothing is updated twice) keep only their
    input for the backward and run again there, instead of storing three 8C-channel tensors.

    The 1x1 convs run as products over the (channels-last) tokens, whose bias the GEMM adds (cuDNN adds a conv's
    bias in a launch of its own); under autocast the six weights are cast together, once for the forward and
    its recomputation (:func:`autocast_weights`). The ConvBNAct modules hold the parameters (official names).
    """

    def __init__(self, dim: int, ratio: float = 4.0, recompute_expansion: bool = False):
        super().__init__()
        self.recompute_expansion = recompute_expansion
        hidden = int(2 * dim * ratio)
        self.conv = nn.Sequential(
            ConvBNAct(dim, hidden, 1, norm=False),
            ConvBNAct(hidden, hidden, 3, stride=2, padding=1, groups=hidden, norm=False),
            ConvBNAct(hidden, 2 * dim, 1, act=False))

    def forward(self, x, hw_shape):
        h, w = hw_shape
        b, _, c = x.shape
        x = x.reshape(b, h, w, c)
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        expand, down, reduce = self.conv
        weights = autocast_weights([expand.conv.weight, expand.conv.bias, down.conv.weight, down.conv.bias,
                                    reduce.conv.weight, reduce.conv.bias])
        x = recomputed(self._expand, x, *weights[:4], enabled=self.recompute_expansion, random=False)
        x = reduce.norm(F.linear(x, weights[4].flatten(1), weights[5]).permute(0, 3, 1, 2))
        return x.flatten(2).transpose(1, 2), tuple(x.shape[-2:])

    def _expand(self, x, expand_weight, expand_bias, down_weight, down_bias):
        """(B, H, W, C) tokens -> (B, H/2, W/2, 8C) tokens (a permuted view of the channels-last conv output)."""
        x = F.relu(F.linear(x, expand_weight.flatten(1), expand_bias))
        down = self.conv[1].conv
        x = F.conv2d(x.permute(0, 3, 1, 2), down_weight, down_bias, down.stride, down.padding, down.dilation,
                     down.groups)
        return F.relu(x).permute(0, 2, 3, 1)
