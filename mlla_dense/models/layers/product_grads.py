"""Weight and bias gradients of a product over token rows, in float32: what the fused blocks' hand-written
backwards (mlla_block_function.py, vss_block_function.py) compute where autocast would cast bfloat16 gradients."""
import torch
from torch import Tensor


def weight_grad(dy: Tensor, x: Tensor) -> Tensor:
    """dy^T x over token rows, in float32: (..., O), (..., I) -> (O, I)."""
    dy, x = dy.reshape(-1, dy.shape[-1]), x.reshape(-1, x.shape[-1])
    if dy.dtype == torch.float32:
        return torch.mm(dy.t(), x)
    if dy.is_cuda:
        return torch.mm(dy.t(), x, out_dtype=torch.float32)
    return torch.mm(dy.t().float(), x.float())


def bias_grad(dy: Tensor) -> Tensor:
    """The column sums of dy over token rows, in float32."""
    return dy.reshape(-1, dy.shape[-1]).sum(0, dtype=torch.float32)
