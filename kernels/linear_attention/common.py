"""Triton helpers shared by the forward and backward kernels.

Tiles are a head's (BLOCK_N tokens, BLOCK_D channels), loaded contiguously. RoPE needs each channel's pair
partner (x[2p] <-> x[2p+1]); the swap is a product with a constant 0/1 permutation matrix on the tensor
cores, so no tile is ever loaded with a stride or reshuffled element by element. The product is exact for
loaded inputs (16-bit values are exact in tf32; fp32 inputs use ieee precision).
"""
import triton
import triton.language as tl

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
def pair_swap_matrix(BLOCK_D: tl.constexpr):
    """(BLOCK_D, BLOCK_D) float32 permutation: (x @ S)[2p] = x[2p+1], (x @ S)[2p+1] = x[2p]."""
    i = tl.arange(0, BLOCK_D)[:, None]
    j = tl.arange(0, BLOCK_D)[None, :]
    return tl.where(i == (j ^ 1), 1.0, 0.0)


@triton.jit
def swap_pairs(x, swap, PRECISION: tl.constexpr):
    return tl.dot(x, swap, input_precision=PRECISION)


@triton.jit
def rope_tile(cos_ptr, sin_ptr, n, H, W, C, channel, mask):
    """cos and signed sin (BLOCK_N, BLOCK_D) of tokens ``n`` for global channels ``channel``.

    Tables are (H + W, C) with row-angle values in rows [0, H) and column-angle values in rows [H, H + W),
    each zero where the other applies (see rope.py), so one value is the sum of two contiguous loads.
    """
    row = (n // W).to(tl.int64)[:, None] * C + channel[None, :]
    col = (H + n % W).to(tl.int64)[:, None] * C + channel[None, :]
    cos = tl.load(cos_ptr + row, mask=mask, other=0.) + tl.load(cos_ptr + col, mask=mask, other=0.)
    sin = tl.load(sin_ptr + row, mask=mask, other=0.) + tl.load(sin_ptr + col, mask=mask, other=0.)
    return cos, sin


@triton.jit
def lepe_tap(base_ptr, n, W, H, tap: tl.constexpr, stride_n, d, d_mask, n_mask, SIGN: tl.constexpr):
    """Rows of ``base_ptr`` (batch and head offsets applied) at the 3x3 neighbour ``tap`` of tokens ``n``.

    SIGN=1 reads neighbour (row + dy, col + dx) (the convolution), SIGN=-1 reads (row - dy, col - dx)
    (its transpose). Out-of-grid neighbours read as 0.
    """
    dy = tap // 3 - 1
    dx = tap % 3 - 1
    row = n // W + SIGN * dy
    col = n % W + SIGN * dx
    valid = n_mask & (row >= 0) & (row < H) & (col >= 0) & (col < W)
    offs = (row * W + col).to(tl.int64)
    return tl.load(base_ptr + offs[:, None] * stride_n + d[None, :], mask=valid[:, None] & d_mask[None, :],
                   other=0.).to(tl.float32)


@triton.jit
def sum_chunks_kernel(part_ptr, out_ptr, NUM_CHUNKS, ROW, scale, BLOCK_C: tl.constexpr, BLOCK: tl.constexpr):
    """out[r, i] = scale * sum_c part[c, r, i] over the chunk partials (deterministic order)."""
    r = tl.program_id(0)
    i = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    rows = tl.num_programs(0)
    acc = tl.zeros((BLOCK,), tl.float32)
    for c0 in range(0, NUM_CHUNKS, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        offs = (c[:, None] * rows + r).to(tl.int64) * ROW + i[None, :]
        acc += tl.sum(tl.load(part_ptr + offs, mask=(c[:, None] < NUM_CHUNKS) & (i[None, :] < ROW), other=0.), 0)
    tl.store(out_ptr + r.to(tl.int64) * ROW + i, acc * scale, mask=i < ROW)
