"""A matrix made of blocks, as :func:`~mlla_dense.kernels.elementwise.pack` writes it: a product weight whose
off-diagonal blocks are zeros lets one batched product do what would take a product per block (SS2D's four
paths, each projecting one of two sequences, in one product over both)."""
from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor


class BlockMatrix(NamedTuple):
    """Rows of blocks, each a 2-D tensor or None (zeros); the blocks of a row share their row count, those of a
    column their column count, and every row and column has a tensor. Written row-major."""
    rows: Sequence[Sequence[Optional[Tensor]]]

    def sizes(self):
        """(row counts, column counts) of the block rows and columns; ValueError where the blocks do not fit."""
        heights, widths = [None] * len(self.rows), [None] * len(self.rows[0])
        for i, row in enumerate(self.rows):
            if len(row) != len(widths):
                raise ValueError('every row of a BlockMatrix needs the same number of blocks')
            for j, block in enumerate(row):
                if block is None:
                    continue
                if block.dim() != 2:
                    raise ValueError(f'BlockMatrix blocks are 2-D, got shape {tuple(block.shape)}')
                for sizes, index, size in ((heights, i, block.shape[0]), (widths, j, block.shape[1])):
                    if sizes[index] not in (None, size):
                        raise ValueError(f'BlockMatrix block ({i}, {j}) of shape {tuple(block.shape)} does not '
                                         f'fit its row or column')
                    sizes[index] = size
        if None in heights or None in widths:
            raise ValueError('every row and column of a BlockMatrix needs at least one tensor')
        return heights, widths

    def numel(self) -> int:
        heights, widths = self.sizes()
        return sum(heights) * sum(widths)

    def tensors(self):
        return [block for row in self.rows for block in row if block is not None]

    def key(self) -> tuple:
        """What pack's plan depends on: each block's address, shape and dtype (None for zeros)."""
        return tuple(None if b is None else (b.data_ptr(), b.shape, b.dtype) for row in self.rows for b in row)

    def pieces(self, offset: int):
        """(block or None, its numel, offset, row length, row stride) of each block, the matrix starting at
        ``offset`` of a flat buffer."""
        heights, widths = self.sizes()
        width = sum(widths)
        out, top = [], 0
        for row, height in zip(self.rows, heights):
            left = 0
            for block, block_width in zip(row, widths):
                out.append((block, height * block_width, offset + top * width + left, block_width, width))
                left += block_width
            top += height
        return out

    def dense(self, dtype: torch.dtype) -> Tensor:
        """The matrix in ``dtype`` (the reference of what pack writes)."""
        heights, widths = self.sizes()
        like = self.tensors()[0]
        return torch.cat([torch.cat([torch.zeros(h, w, dtype=dtype, device=like.device) if b is None else b.to(dtype)
                                     for b, w in zip(row, widths)], dim=1)
                          for row, h in zip(self.rows, heights)])
