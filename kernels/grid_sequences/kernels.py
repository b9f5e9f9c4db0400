"""Triton kernels between a (B, H, W, D) token map and SS2D's sequences (B, K, D, H*W): a tile of BLOCK_H x
BLOCK_W tokens by BLOCK_D channels per program, read once and written to (or read from) both the row-major and
the column-major sequence, so each direction of the transpose is one launch."""
import triton
import triton.language as tl


@triton.jit
def _token_tile(H, W, D, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_D: tl.constexpr):
    """Program (tile of the map, channel block, sample): its rows (BLOCK_H, 1, 1), columns (1, BLOCK_W, 1),
    channels (1, 1, BLOCK_D) as int64, the sample, and the mask."""
    tiles_w = tl.cdiv(W, BLOCK_W)
    tile = tl.program_id(0)
    h = (tile // tiles_w) * BLOCK_H + tl.arange(0, BLOCK_H)
    w = (tile % tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    h3 = h.to(tl.int64)[:, None, None]
    w3 = w.to(tl.int64)[None, :, None]
    d3 = d.to(tl.int64)[None, None, :]
    mask = (h3 < H) & (w3 < W) & (d3 < D)
    return h3, w3, d3, tl.program_id(2).to(tl.int64), mask


@triton.jit
def _grid_to_sequences_kernel(u_ptr, xs_ptr, H, W, D, s_ub, s_uh, s_uw,
                              BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_D: tl.constexpr):
    """xs[b, 0, d, h * W + w] = xs[b, 1, d, w * H + h] = u[b, h, w, d] (xs contiguous)."""
    h, w, d, b, mask = _token_tile(H, W, D, BLOCK_H, BLOCK_W, BLOCK_D)
    length = tl.cast(H, tl.int64) * W
    v = tl.load(u_ptr + b * s_ub + h * s_uh + w * s_uw + d, mask=mask)
    rows = xs_ptr + b * 2 * D * length + d * length
    tl.store(rows + h * W + w, v, mask=mask)
    tl.store(rows + D * length + w * H + h, v, mask=mask)


@triton.jit
def _sequences_to_grid_kernel(ys_ptr, y_ptr, H, W, D, s_yb, s_yk, K: tl.constexpr,
                              BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_D: tl.constexpr):
    """y[b, h, w, d] (contiguous) = rows + columns of ys (B, K, D, H * W) at that token, added in float32: K = 2,
    ys[:, 0] + ys[:, 1] rounded once; K = 4, (ys[:, 0] + ys[:, 2]) + (ys[:, 1] + ys[:, 3]) with each pair's sum
    rounded to ys' dtype first (as the reference's sum over the paths)."""
    h, w, d, b, mask = _token_tile(H, W, D, BLOCK_H, BLOCK_W, BLOCK_D)
    length = tl.cast(H, tl.int64) * W
    s_yk = tl.cast(s_yk, tl.int64)
    base = ys_ptr + b * s_yb + d * length
    at_row = h * W + w
    at_col = w * H + h
    acc_rows = tl.load(base + at_row, mask=mask, other=0.).to(tl.float32)
    acc_cols = tl.load(base + s_yk + at_col, mask=mask, other=0.).to(tl.float32)
    if K == 4:
        acc_rows += tl.load(base + 2 * s_yk + at_row, mask=mask, other=0.).to(tl.float32)
        acc_cols += tl.load(base + 3 * s_yk + at_col, mask=mask, other=0.).to(tl.float32)
    if K == 4 and ys_ptr.dtype.element_ty != tl.float32:
        acc_rows = acc_rows.to(ys_ptr.dtype.element_ty).to(tl.float32)
        acc_cols = acc_cols.to(ys_ptr.dtype.element_ty).to(tl.float32)
    tl.store(y_ptr + ((b * H + h) * W + w) * D + d, (acc_rows + acc_cols).to(y_ptr.dtype.element_ty), mask=mask)
