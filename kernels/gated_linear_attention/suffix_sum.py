"""The log decays' gradient from its per-position terms: a suffix sum in scan order, all directions in one launch.

A log decay enters every cumulative log decay from its position on, so its gradient is the sum of the terms at
its position and at every later one of the scan (module doc of backward.py). One program walks the positions of
one (direction, batch, channel block) from the last to the first in blocks of BT, carrying the running sum:
tokens are reached by the same index arithmetic as the chunk kernels (no flipped or transposed copies), and the
directions run side by side. (PyTorch's cumsum along the token axis of a (B, N, H) tensor runs a thread per
column through all N tokens: milliseconds at N = 67,200.)
"""
import os

import torch
import triton
import triton.language as tl

BLOCK_TOKENS = 2048
INTERPRETED_BLOCK_TOKENS = 8  # under the Triton interpreter: small test sequences cross several blocks
MAX_BLOCK_COLUMNS = 4


@triton.jit
def _suffix_sum_kernel(x_ptr, N, INNER, GRID_H, GRID_W, stride_d, stride_b, REVERSE_MASK: tl.constexpr,
                       COLUMNS_MASK: tl.constexpr, BT: tl.constexpr, BI: tl.constexpr):
    """In place over x (directions, B, N, INNER): each element becomes the sum of itself and of the elements at
    the later positions of its direction's scan (bit d of the masks: direction d runs reversed / by columns)."""
    b = tl.program_id(0)
    d = tl.program_id(1)
    cols = tl.program_id(2) * BI + tl.arange(0, BI)
    reverse = (REVERSE_MASK >> d) & 1
    columns = (COLUMNS_MASK >> d) & 1
    base = x_ptr + d.to(tl.int64) * stride_d + b.to(tl.int64) * stride_b
    carry = tl.zeros((BI,), tl.float32)
    for start in range(0, N, BT):
        p = N - 1 - start - tl.arange(0, BT)  # scan positions, the last first
        valid = p >= 0
        t = tl.where(reverse == 1, N - 1 - p, p)
        t = tl.where(columns == 1, (t % GRID_H) * GRID_W + t // GRID_H, t)
        t = tl.where(valid, t, 0).to(tl.int64)
        mask = valid[:, None] & (cols < INNER)[None, :]
        addr = base + t[:, None] * INNER + cols[None, :]
        x = tl.load(addr, mask=mask, other=0.)
        tl.store(addr, tl.cumsum(x, axis=0) + carry[None, :], mask=mask)
        carry += tl.sum(x, axis=0)


def suffix_sums_(terms: torch.Tensor, directions, grid_h: int, grid_w: int):
    """``terms`` (directions, B, N, H[, K]) float32, contiguous, replaced in place by their suffix sums in each
    direction's scan order."""
    d, b, n = terms.shape[:3]
    inner = terms[0, 0, 0].numel()
    tokens = INTERPRETED_BLOCK_TOKENS if os.environ.get('TRITON_INTERPRET') == '1' else BLOCK_TOKENS
    block = min(triton.next_power_of_2(inner), MAX_BLOCK_COLUMNS)
    reverse = sum(1 << i for i, name in enumerate(directions) if name.endswith('reversed'))
    columns = sum(1 << i for i, name in enumerate(directions) if name.startswith('columns'))
    _suffix_sum_kernel[(b, d, triton.cdiv(inner, block))](
        terms, n, inner, grid_h, grid_w, terms.stride(0), terms.stride(1), REVERSE_MASK=reverse,
        COLUMNS_MASK=columns, BT=tokens, BI=block, num_warps=8)
