"""LayerNorm forward: a tile of whole tokens per program, statistics in float32 (two passes over registers), with
correctly rounded division and square root (Triton's ``/`` and ``tl.sqrt`` are approximate; VMamba's float32
gradients amplify the difference, benchmarks/NOTES.md)."""
import triton
import triton.language as tl


@triton.jit
def _layer_norm_fwd_kernel(x_ptr, w_ptr, b_ptr, y_ptr, stats_ptr, M, C, s_x, s_y, eps,
                           BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """Rows pid * BLOCK_M ..: y = (x - mean) * rstd * w + b; also stores mean and rstd per row (float32) as
    rows 0 and 1 of stats (2, M)."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_C)
    valid = cols < C
    in_rows = rows < M
    mask = in_rows[:, None] & valid[None, :]
    base = rows.to(tl.int64)[:, None]
    x = tl.load(x_ptr + base * s_x + cols[None, :], mask=mask, other=0.).to(tl.float32)
    count = tl.cast(C, tl.float32)
    mean = tl.math.div_rn(tl.sum(x, axis=1), count)
    centered = tl.where(mask, x - mean[:, None], 0.)
    variance = tl.math.div_rn(tl.sum(centered * centered, axis=1), count)
    rstd = tl.math.div_rn(1.0, tl.sqrt_rn(variance + tl.cast(eps, tl.float32)))
    w = tl.load(w_ptr + cols, mask=valid, other=0.).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=valid, other=0.).to(tl.float32)
    y = centered * rstd[:, None] * w[None, :] + b[None, :]
    tl.store(y_ptr + base * s_y + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(stats_ptr + rows, mean, mask=in_rows)
    tl.store(stats_ptr + M + rows, rstd, mask=in_rows)
