"""Triton helpers shared by the forward and backward kernels: phi, RoPE tables and pair rotation."""
import triton
import triton.language as tl

EPS = 1e-6


@triton.jit
def phi(x):
    """elu(x) + 1, written as exp(x) for x <= 0 (no cancellation)."""
    return tl.where(x > 0, x + 1.0, tl.exp(x))


@triton.jit
def phi_grad(x):
    """d phi / dx."""
    return tl.where(x > 0, 1.0, tl.exp(x))


@triton.jit
def rope_cos_sin(rows_ptr, cols_ptr, n, W, head, C, D, n_mask, BLOCK_D: tl.constexpr):
    """cos and sin (BLOCK_N, BLOCK_D // 2) of the channel pairs of ``head`` for tokens ``n``.

    Global pair p < C/4 turns by the row angle (table rows_ptr: (H, C/4, 2)), the rest by the column angle
    (cols_ptr: (W, C/4, 2)).
    """
    quarter = C // 4
    pair = head * (D // 2) + tl.arange(0, BLOCK_D // 2)
    pair_mask = tl.arange(0, BLOCK_D // 2) < D // 2
    by_row = (pair < quarter)[None, :]
    row_idx = (n // W)[:, None] * quarter + pair[None, :]
    col_idx = (n % W)[:, None] * quarter + (pair - quarter)[None, :]
    mask = n_mask[:, None] & pair_mask[None, :]
    row_mask = mask & by_row
    col_mask = mask & (~by_row)
    cos = (tl.load(rows_ptr + 2 * row_idx, mask=row_mask, other=0.)
           + tl.load(cols_ptr + 2 * col_idx, mask=col_mask, other=0.))
    sin = (tl.load(rows_ptr + 2 * row_idx + 1, mask=row_mask, other=0.)
           + tl.load(cols_ptr + 2 * col_idx + 1, mask=col_mask, other=0.))
    return cos, sin


@triton.jit
def rotate(x, cos, sin, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Rotate the interleaved pairs (x[2p], x[2p+1]) of x (BLOCK_N, BLOCK_D) by angles given as cos/sin.

    Pass -sin for the inverse (transposed) rotation.
    """
    even, odd = tl.split(tl.reshape(x, (BLOCK_N, BLOCK_D // 2, 2)))
    return tl.reshape(tl.join(even * cos - odd * sin, odd * cos + even * sin), (BLOCK_N, BLOCK_D))


@triton.jit
def lepe_tap(base_ptr, n, W, H, N, tap: tl.constexpr, stride_n, d, d_mask, n_mask, SIGN: tl.constexpr):
    """Rows of ``base_ptr`` (B-offset, head-offset applied) at the 3x3 neighbour ``tap`` of tokens ``n``.

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
