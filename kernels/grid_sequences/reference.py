"""SS2D's two sequences of a token map in plain PyTorch: the specification, the CPU path and the test oracle."""
import torch
from torch import Tensor


def grid_to_sequences_reference(u: Tensor) -> Tensor:
    """(B, H, W, D) tokens -> (B, 2, D, H*W): the map's rows (row-major) and its columns (column-major)."""
    b, h, w, d = u.shape
    xs = torch.empty((b, 2, d, h * w), dtype=u.dtype, device=u.device)
    xs[:, 0].view(b, d, h, w).copy_(u.permute(0, 3, 1, 2))
    xs[:, 1].view(b, d, w, h).copy_(u.permute(0, 3, 2, 1))
    return xs


def sequences_to_grid_reference(ys: Tensor, height: int, width: int) -> Tensor:
    """(B, K, D, H*W) sequence values -> (B, H, W, D) tokens, in ys' dtype: K = 2 adds a row sequence (k = 0) and
    a column sequence (k = 1) on the grid; K = 4 (SS2D's paths k = 2 * reversed + sequence) first adds each
    sequence's two paths, then the two sums."""
    b, k, d, _ = ys.shape
    if k == 4:
        ys = ys.view(b, 2, 2, d, -1).sum(1)
    rows = ys[:, 0].view(b, d, height, width).permute(0, 2, 3, 1)
    cols = ys[:, 1].view(b, d, width, height).permute(0, 3, 2, 1)
    out = torch.empty((b, height, width, d), dtype=ys.dtype, device=ys.device)
    return torch.add(rows, cols, out=out)
