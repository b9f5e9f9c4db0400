"""LayerNorm backward: input gradient per token, and weight/bias gradients as per-program partial sums
(elementwise accumulators reduced once per program) that the last program to finish adds up in a fixed order."""
import triton
import triton.language as tl

from ..partial_sums import last_to_arrive


@triton.jit
def _layer_norm_bwd_kernel(x_ptr, dy_ptr, w_ptr, stats_ptr, dres_ptr, dx_ptr, part_ptr, dw_ptr, db_ptr,
                           counter_ptr, M, C, ROWS_PER_CHUNK, s_x, s_dy, s_dres, s_dx, RESIDUAL: tl.constexpr,
                           BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
                           STAGES: tl.constexpr):
    """Rows of chunk pid: dx = rstd * (w dy - mean_c(w dy) - xhat * mean_c(w dy xhat)) (+ dres, the gradient
    that reaches x by another path, with RESIDUAL); part[pid] holds (sum dy * xhat, sum dy) over the chunk's
    rows, and the last chunk to finish sums them in chunk order into d weight and d bias (their dtype)."""
    chunk = tl.program_id(0)
    cols = tl.arange(0, BLOCK_C)
    valid = cols < C
    w = tl.load(w_ptr + cols, mask=valid, other=0.).to(tl.float32)
    d_w = tl.zeros((BLOCK_M, BLOCK_C), tl.float32)
    d_b = tl.zeros((BLOCK_M, BLOCK_C), tl.float32)
    start = chunk * ROWS_PER_CHUNK
    end = tl.minimum(start + ROWS_PER_CHUNK, M)
    for off in tl.range(start, end, BLOCK_M, num_stages=STAGES):
        rows = off + tl.arange(0, BLOCK_M)
        in_rows = rows < end
        mask = in_rows[:, None] & valid[None, :]
        base = rows.to(tl.int64)[:, None]
        x = tl.load(x_ptr + base * s_x + cols[None, :], mask=mask, other=0.).to(tl.float32)
        dy = tl.load(dy_ptr + base * s_dy + cols[None, :], mask=mask, other=0.).to(tl.float32)
        mean = tl.load(stats_ptr + rows, mask=in_rows, other=0.)
        rstd = tl.load(stats_ptr + M + rows, mask=in_rows, other=0.)
        xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.)
        wdy = w[None, :] * dy
        mean_wdy = tl.math.div_rn(tl.sum(wdy, axis=1), tl.cast(C, tl.float32))
        mean_wdy_xhat = tl.math.div_rn(tl.sum(wdy * xhat, axis=1), tl.cast(C, tl.float32))
        dx = (wdy - mean_wdy[:, None] - xhat * mean_wdy_xhat[:, None]) * rstd[:, None]
        if RESIDUAL:
            dx += tl.load(dres_ptr + base * s_dres + cols[None, :], mask=mask, other=0.).to(tl.float32)
        tl.store(dx_ptr + base * s_dx + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=mask)
        d_w += dy * xhat
        d_b += dy
    part = part_ptr + chunk.to(tl.int64) * 2 * BLOCK_C + cols
    tl.store(part, tl.sum(d_w, axis=0))
    tl.store(part + BLOCK_C, tl.sum(d_b, axis=0))
    num_chunks = tl.num_programs(0)
    if last_to_arrive(counter_ptr, num_chunks):
        sum_w = tl.zeros((BLOCK_C,), tl.float32)
        sum_b = tl.zeros((BLOCK_C,), tl.float32)
        for k0 in range(0, num_chunks, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            rows = part_ptr + k.to(tl.int64)[:, None] * 2 * BLOCK_C + cols[None, :]
            in_chunks = (k < num_chunks)[:, None]
            sum_w += tl.sum(tl.load(rows, mask=in_chunks, other=0., cache_modifier='.cg'), axis=0)
            sum_b += tl.sum(tl.load(rows + BLOCK_C, mask=in_chunks, other=0., cache_modifier='.cg'), axis=0)
        tl.store(dw_ptr + cols, sum_w.to(dw_ptr.dtype.element_ty), mask=valid)
        tl.store(db_ptr + cols, sum_b.to(db_ptr.dtype.element_ty), mask=valid)
