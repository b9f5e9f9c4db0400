"""3x3 depthwise convolution of tokens on their grid: one public function, :func:`depthwise_conv`.

Works on the (B, H*W, C) token layout directly (no permute to channels-first and back), with the bias,
SiLU and residual of MLLA's blocks fused. Triton kernels on CUDA tensors (triton ops under torch.compile),
the PyTorch reference otherwise; ``MLLA_DENSE_BACKEND`` overrides (see :mod:`mlla_dense.kernels.backend`).
"""
from ..backend import use_triton
from .reference import check_inputs, depthwise_conv_reference


def depthwise_conv(x, hw_shape, weight, bias=None, residual=False, activation=None):
    """``act(conv3x3(x) + bias) + (x if residual)`` per channel of tokens ``x`` (B, H*W, C).

    Args:
        x: (B, N, C) tokens of an ``hw_shape`` = (H, W) grid in row-major order.
        weight, bias: (C, 1, 3, 3) and (C,) (or None) of a depthwise ``nn.Conv2d(C, C, 3, padding=1, groups=C)``.
        residual: add the input to the result.
        activation: None or 'silu' (applied before the residual).

    Returns:
        (B, N, C) in the dtype of ``x``.
    """
    if not use_triton(x):
        return depthwise_conv_reference(x, hw_shape, weight, bias, residual, activation)
    from .op import depthwise_conv_op
    if bias is None:
        bias = weight.new_zeros(weight.shape[0])
    if activation not in (None, 'silu'):
        check_inputs(x, hw_shape, weight, bias, activation)
    height, width = hw_shape
    return depthwise_conv_op(x, weight if weight.is_contiguous() else weight.contiguous(),
                             bias if bias.is_contiguous() else bias.contiguous(), height, width, residual,
                             activation == 'silu')


__all__ = ['depthwise_conv', 'depthwise_conv_reference']
