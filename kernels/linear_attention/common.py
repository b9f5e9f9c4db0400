"""Triton helpers shared by the forward and backward kernels.

A program owns a channel group: G whole heads of D channels, BLOCK_C >= G * D lanes, loaded as contiguous
(BLOCK_N tokens, BLOCK_C channels) tiles. Products that belong to one head (kv, dkv) are accumulated as full
(BLOCK_C, BLOCK_C) matrices and masked to their block diagonal; per-head sums over channels are a product
with the block-diagonal ones matrix (or a plain row sum when G = 1).

RoPE without moving a channel: with ``ssin`` the signed sine table (see rope.py), pair partners share one
angle with opposite signs, so ``rope(x) = x * cos - partner(x * ssin)``, and ``partner(x) @ M = x @ swap(M)``
where ``swap`` exchanges the rows 2p and 2p+1. Every pair swap therefore lands on a small (BLOCK_C, BLOCK_C)
matrix outside the token loop (a permuted load of kv, or a permuted sum of accumulators) instead of on the
token tiles.

The cos and sine halves of each product run as one product of twice the depth: token tiles side by side with
``interleave`` (cos term in the even columns, sine term in the odd ones) against a paired matrix whose even
and odd rows hold the two right-hand sides (``paired_rows``, ``paired_columns``), and paired accumulators go
back to the (cos part, sine part) halves of a partials row as they are stored (``store_paired``). One product
of depth 2 BLOCK_C instead of two of depth BLOCK_C per tile: one operand staging, one tensor-core wait.
"""
import triton
import triton.language as tl

from ..dependent_launch import follow_previous_grid
from ..grid_taps import grid_tap

EPS = tl.constexpr(1e-6)


@triton.jit
def phi(x):
    """elu(x) + 1, written as exp(x) for x <= 0 (no cancellation)."""
    return tl.where(x > 0, x + 1.0, tl.exp(x))


@triton.jit
def phi_grad(x):
    """d phi / dx."""
    return tl.where(x > 0, 1.0, tl.exp(x))


@triton.jit
def group_lanes(group, C: tl.constexpr, D: tl.constexpr, G: tl.constexpr, BLOCK_C: tl.constexpr):
    """Lanes of a program's channel group: (lane index, global channel, valid lane mask, first channel,
    end of its channels)."""
    lane = tl.arange(0, BLOCK_C)
    first = group * (G * D)
    channel = first + lane
    return lane, channel, (lane < G * D) & (channel < C), first, tl.minimum(first + G * D, C)


@triton.jit
def block_diagonal(lane, valid, D: tl.constexpr):
    """(BLOCK_C, BLOCK_C) mask of the lane pairs that belong to one head."""
    return (lane[:, None] // D == lane[None, :] // D) & valid[:, None] & valid[None, :]


@triton.jit
def head_sum(x, ones, G: tl.constexpr, PRECISION: tl.constexpr):
    """Per token, the sum of ``x`` over each head's channels: (BLOCK_N, 1) for one head per program, else
    (BLOCK_N, BLOCK_C) with the sum repeated on every channel of the head."""
    if G == 1:
        total = tl.sum(x, axis=1)[:, None]
    else:
        total = tl.dot(x, ones, input_precision=PRECISION)
    return total


@triton.jit
def rope_tile(cos_ptr, sin_ptr, n, W, H, C: tl.constexpr, channel, mask, first, last):
    """cos and signed sin (BLOCK_N, BLOCK_C) of tokens ``n`` for a group of channels ``first..last - 1``.

    The first C/2 channels turn with the token's row (table rows 0..H-1), the others with its column (rows
    H..H+W-1); each table is zero where the other half applies. A group inside one half reads one table row
    per token; a group across the middle reads both and adds them. Both are contiguous (vector) loads.
    """
    row = (n // W).to(tl.int64)[:, None] * C + channel[None, :]
    col = (H + n % W).to(tl.int64)[:, None] * C + channel[None, :]
    if last <= C // 2:
        cos = tl.load(cos_ptr + row, mask=mask, other=0.)
        sin = tl.load(sin_ptr + row, mask=mask, other=0.)
    elif first >= C // 2:
        cos = tl.load(cos_ptr + col, mask=mask, other=0.)
        sin = tl.load(sin_ptr + col, mask=mask, other=0.)
    else:
        cos = tl.load(cos_ptr + row, mask=mask, other=0.) + tl.load(cos_ptr + col, mask=mask, other=0.)
        sin = tl.load(sin_ptr + row, mask=mask, other=0.) + tl.load(sin_ptr + col, mask=mask, other=0.)
    return cos, sin


@triton.jit
def interleave(a, b):
    """Two (R, K) tiles side by side as one (R, 2K) tile: ``a`` in the even columns, ``b`` in the odd ones."""
    return tl.reshape(tl.join(a, b), (a.shape[0], 2 * a.shape[1]))


@triton.jit
def deinterleave(x):
    """The even and the odd columns of an (R, 2K) tile (the inverse of ``interleave``)."""
    return tl.split(tl.reshape(x, (x.shape[0], x.shape[1] // 2, 2)))


@triton.jit
def paired_sources(valid, BLOCK_C: tl.constexpr):
    """Index r of a paired operand's 2 BLOCK_C rows (or columns), the row of M each one reads, (r // 2) ^ (r % 2),
    and whether its lane is valid (pair partners share validity: heads have an even width)."""
    r = tl.arange(0, 2 * BLOCK_C)
    return r, (r // 2) ^ (r % 2), tl.reshape(tl.join(valid, valid), (2 * BLOCK_C,))


@triton.jit
def paired_rows(ptr, lane, valid, BLOCK_C: tl.constexpr):
    """From a (BLOCK_C, BLOCK_C) float32 matrix M, the (2 BLOCK_C, BLOCK_C) operand P with P[2i] = M[i] and
    P[2i+1] = -M[i ^ 1], so that ``interleave(x cos, x ssin) @ P = x cos @ M - x ssin @ swap(M)``."""
    r, src, ok = paired_sources(valid, BLOCK_C)
    m = tl.load(ptr + src[:, None] * BLOCK_C + lane[None, :], mask=ok[:, None] & valid[None, :], other=0.)
    return tl.where((r % 2 == 0)[:, None], m, -m)


@triton.jit
def paired_columns(ptr, lane, valid, BLOCK_C: tl.constexpr):
    """From a (BLOCK_C, BLOCK_C) float32 matrix M, the (BLOCK_C, 2 BLOCK_C) operand T with column 2i = row i of
    M and column 2i+1 = row i ^ 1, so that ``deinterleave(g @ T) = (g @ M^T, g @ swap(M)^T)``."""
    _, src, ok = paired_sources(valid, BLOCK_C)
    return tl.load(ptr + src[None, :] * BLOCK_C + lane[:, None], mask=valid[:, None] & ok[None, :], other=0.)


@triton.jit
def store_paired(base, acc, vec, BLOCK_C: tl.constexpr):
    """Store a paired accumulator (2 BLOCK_C, BLOCK_C), rows 2i / 2i+1 = row i of the cos / sine part, as the
    partials row (cos part, sine part, vector) that finish_pairs_kernel sums."""
    r = tl.arange(0, 2 * BLOCK_C)
    lane = tl.arange(0, BLOCK_C)
    tl.store(base + ((r % 2) * BLOCK_C * BLOCK_C + (r // 2) * BLOCK_C)[:, None] + lane[None, :], acc)
    tl.store(base + 2 * BLOCK_C * BLOCK_C + lane, vec)


@triton.jit
def load_pair(ptr, lane, valid, BLOCK_C: tl.constexpr):
    """A (BLOCK_C, BLOCK_C) float32 matrix and its row-swapped copy (rows 2p <-> 2p+1)."""
    cols = lane[None, :]
    mask = valid[:, None] & valid[None, :]
    plain = tl.load(ptr + lane[:, None] * BLOCK_C + cols, mask=mask, other=0.)
    swapped = tl.load(ptr + (lane ^ 1)[:, None] * BLOCK_C + cols, mask=mask, other=0.)
    return plain, swapped


@triton.jit
def load_stats(stats_ptr, bg, lane, valid, D: tl.constexpr, BLOCK_C: tl.constexpr):
    """A program's forward statistics: the address of its kv (for ``paired_rows`` / ``paired_columns``),
    mean(phi(k)), and the block-diagonal ones matrix of its heads."""
    stats = stats_ptr + bg.to(tl.int64) * (BLOCK_C * BLOCK_C + BLOCK_C)
    kmean = tl.load(stats + BLOCK_C * BLOCK_C + lane, mask=valid, other=0.)
    ones = block_diagonal(lane, valid, D).to(tl.float32)
    return stats, kmean, ones


@triton.jit
def lepe_grad_tap(do_tile, rel, row, col, W, H, tap: tl.constexpr, stride_n, mask, w_ptr, channel, valid, v, dv, acc):
    """One tap of the LePE transpose: returns dv + w[tap] * dO(tap) and acc + v * dO(tap), the elementwise
    terms of the tap's weight gradient."""
    do_tap = grid_tap(do_tile, rel, row, col, W, H, tap, stride_n, mask, -1)
    weight = tl.load(w_ptr + channel * 9 + tap, mask=valid, other=0.).to(tl.float32)
    return dv + weight[None, :] * do_tap, acc + v * do_tap


@triton.jit
def finish_pairs_kernel(part_ptr, out_ptr, NUM_CHUNKS, scale, BLOCK_C: tl.constexpr, D: tl.constexpr,
                        BLOCK_K: tl.constexpr, PDL: tl.constexpr):
    """Sum chunk partials of a paired product into one block-diagonal matrix, in a fixed order.

    part: (chunks, R, 2 * BLOCK_C^2 + BLOCK_C) float32, per chunk and row r the accumulators P (cos part),
    S (signed-sine part) and a vector; out: (R, BLOCK_C^2 + BLOCK_C) = scale * (sum P - swap(sum S), sum vec),
    masked to the block diagonal (heads of D channels). Program (r, i) writes row i of the matrix, i =
    BLOCK_C writes the vector.
    """
    follow_previous_grid(PDL)
    r = tl.program_id(0)
    i = tl.program_id(1)
    rows = tl.num_programs(0)
    lane = tl.arange(0, BLOCK_C)
    size = BLOCK_C * BLOCK_C
    part_row = 2 * size + BLOCK_C
    acc = tl.zeros((BLOCK_C,), tl.float32)
    for k0 in range(0, NUM_CHUNKS, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        base = part_ptr + (k[:, None] * rows + r).to(tl.int64) * part_row + lane[None, :]
        ok = k[:, None] < NUM_CHUNKS
        if i < BLOCK_C:
            acc += tl.sum(tl.load(base + i * BLOCK_C, mask=ok, other=0.), 0)
            acc -= tl.sum(tl.load(base + size + (i ^ 1) * BLOCK_C, mask=ok, other=0.), 0)
        else:
            acc += tl.sum(tl.load(base + 2 * size, mask=ok, other=0.), 0)
    out = out_ptr + r.to(tl.int64) * (size + BLOCK_C) + i * BLOCK_C + lane
    if i < BLOCK_C:
        acc = tl.where(lane // D == i // D, acc, 0.)
    tl.store(out, acc * tl.cast(scale, tl.float32))
