"""3x3 depthwise convolution of tokens in plain PyTorch: the specification, the CPU path and the test oracle.

Tokens ``x`` (B, H*W, C) lie row-major on an H x W grid; with zero padding of one, per channel c::

    out = act(conv3x3_c(x) + bias_c) + (x if residual)

act is the identity or SiLU. MLLA's blocks use it three times: ``x + cpe(x)`` twice (residual) and
``SiLU(dwc(x))`` once (activation).
"""
import torch.nn.functional as F

ACTIVATIONS = (None, 'silu')


def check_inputs(x, hw_shape, weight, bias, activation):
    """Validate shapes and options shared by the reference and the kernels; returns (B, N, C, H, W)."""
    if x.dim() != 3:
        raise ValueError(f'x must be tokens (B, N, C), got shape {tuple(x.shape)}')
    b, n, c = x.shape
    h, w = hw_shape
    if h * w != n:
        raise ValueError(f'a {h}x{w} grid has {h * w} tokens but the input has {n}')
    if weight.shape != (c, 1, 3, 3):
        raise ValueError(f'weight must be a 3x3 depthwise kernel (C, 1, 3, 3) = {(c, 1, 3, 3)}, '
                         f'got {tuple(weight.shape)}')
    if bias is not None and bias.shape != (c,):
        raise ValueError(f'bias must have shape ({c},), got {tuple(bias.shape)}')
    if activation not in ACTIVATIONS:
        raise ValueError(f'activation must be one of {ACTIVATIONS}, got {activation!r}')
    return b, n, c, h, w


def depthwise_conv_reference(x, hw_shape, weight, bias=None, residual=False, activation=None):
    """The op on (B, N, C) tokens with PyTorch's conv2d (in the dtype of ``x``)."""
    b, n, c, h, w = check_inputs(x, hw_shape, weight, bias, activation)
    grid = x.reshape(b, h, w, c).permute(0, 3, 1, 2)
    out = F.conv2d(grid, weight.to(x.dtype), None if bias is None else bias.to(x.dtype), padding=1, groups=c)
    out = out.permute(0, 2, 3, 1).reshape(b, n, c)
    if activation == 'silu':
        out = F.silu(out)
    return x + out if residual else out
