"""LayerNorm over the channels of tokens in plain PyTorch: the specification, the CPU path and the test oracle.

``y = (x - mean) / sqrt(var + eps) * weight + bias`` per token (biased variance over the last dim), computed in
float32 whatever the input dtype and returned in ``out_dtype``. Under autocast this is what the official
blocks compute (autocast runs layer_norm in float32) followed by the cast their next Linear makes.
"""
import torch.nn.functional as F


def check_inputs(x, weight, bias):
    """Validate the shapes shared by the reference and the kernels; returns C."""
    c = x.shape[-1]
    if x.dim() < 2:
        raise ValueError(f'x must have a channel dim after at least one token dim, got shape {tuple(x.shape)}')
    if weight.shape != (c,) or bias.shape != (c,):
        raise ValueError(f'weight and bias must have shape ({c},), got {tuple(weight.shape)} and '
                         f'{tuple(bias.shape)}')
    return c


def layer_norm_reference(x, weight, bias, eps=1e-5, out_dtype=None):
    """LayerNorm of the last dim in float32 (F.layer_norm), returned in ``out_dtype`` (default: x's dtype)."""
    c = check_inputs(x, weight, bias)
    y = F.layer_norm(x.float(), (c,), weight.float(), bias.float(), eps)
    return y.to(out_dtype or x.dtype)
