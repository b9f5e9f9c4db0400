"""LayerNorm outside the fused blocks (stems, downsampling, output norms) as autocast computes it, with the
LayerNorm kernel on CUDA."""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlla_dense.kernels.layer_norm import layer_norm


def autocast_layer_norm(norm: nn.LayerNorm, x: Tensor) -> Tensor:
    """``norm``'s LayerNorm over the last dim of ``x``. On CUDA as the kernel, in float32 under autocast (what
    autocast's LayerNorm returns there) and in x's dtype otherwise: one launch each way where autocast adds a cast
    of the input and one of its gradient. Elsewhere F.layer_norm, under that device's autocast policy."""
    if x.device.type != 'cuda':
        return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    out_dtype = torch.float32 if torch.is_autocast_enabled('cuda') else x.dtype
    return layer_norm(x, norm.weight, norm.bias, norm.eps, out_dtype)
