"""Weight and bias gradients of a product over token rows, in float32: what the fused blocks' hand-written
backwards (mlla_block_function.py, vss_block_function.py) compute where autocast would cast bfloat16 gradients."""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from mlla_dense.kernels.elementwise import column_sums, finish_column_sums


def weight_grad(dy: Tensor, x: Tensor) -> Tensor:
    """dy^T x over token rows, in float32: (..., O), (..., I) -> (O, I)."""
    dy, x = dy.reshape(-1, dy.shape[-1]), x.reshape(-1, x.shape[-1])
    if dy.dtype == torch.float32:
        return torch.mm(dy.t(), x)
    if dy.is_cuda:
        return torch.mm(dy.t(), x, out_dtype=torch.float32)
    return torch.mm(dy.t().float(), x.float())


def bias_grads(*pairs: Tuple[Tensor, Optional[Tensor]]) -> List[Tensor]:
    """The bias gradients of (gradient, column partial sums or None) pairs, in order: from the partials that a
    kernel left (kernels/elementwise) where there are, from the gradients otherwise (column_sums); two per
    launch."""
    out = [None] * len(pairs)
    with_partials = [i for i, (_, partials) in enumerate(pairs) if partials is not None]
    without = [i for i, (_, partials) in enumerate(pairs) if partials is None]
    for indices, finish, part in ((with_partials, finish_column_sums, 1), (without, column_sums, 0)):
        for group in (indices[i:i + 2] for i in range(0, len(indices), 2)):
            for i, sums in zip(group, finish(*(pairs[i][part] for i in group))):
                out[i] = sums
    return out
