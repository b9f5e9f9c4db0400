"""Backward kernels. Pass 1, chunked over tokens: the gradient at the convolution's output ``g`` (dy, or
dy * SiLU'(pre) with the pre-activation recomputed from the nine taps, then stored) and the partials of the
weight and bias gradients (per tap, v * g summed elementwise over the chunk, over the tile's tokens at the
end). Pass 2: dx = the transposed taps of g (+ dy for the residual)."""
import triton
import triton.language as tl

from ..grid_taps import grid_tap


@triton.jit
def tap_product(x_tile, rel, row, col, W, H, tap: tl.constexpr, stride_n, mask, g, acc):
    """acc + x(tap) * g: one tap's elementwise weight-gradient terms."""
    return acc + grid_tap(x_tile, rel, row, col, W, H, tap, stride_n, mask, 1) * g


@triton.jit
def _dwconv_grad_weight_kernel(x_ptr, dy_ptr, w_ptr, b_ptr, g_ptr, part_ptr,
                               N, H, W, C, NUM_CBLOCKS, TOKENS_PER_CHUNK,
                               s_x_b, s_x_n, s_dy_b, s_dy_n, s_g_b, s_g_n,
                               SILU: tl.constexpr,
                               BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    chunk = tl.program_id(0)
    bc = tl.program_id(1)
    b = bc // NUM_CBLOCKS
    lane = tl.arange(0, BLOCK_C)
    channel = (bc % NUM_CBLOCKS) * BLOCK_C + lane
    valid = channel < C
    local = tl.arange(0, BLOCK_N)
    rel_x = local[:, None] * s_x_n + channel[None, :]
    rel_dy = local[:, None] * s_dy_n + channel[None, :]
    rel_g = local[:, None] * s_g_n + channel[None, :]
    x_batch = x_ptr + b.to(tl.int64) * s_x_b
    dy_batch = dy_ptr + b.to(tl.int64) * s_dy_b
    g_batch = g_ptr + b.to(tl.int64) * s_g_b
    bias = tl.load(b_ptr + channel, mask=valid, other=0.).to(tl.float32)
    a0 = tl.zeros((BLOCK_N, BLOCK_C), tl.float32)
    a1 = tl.zeros((BLOCK_N, BLOCK_C), tl.float32)
    a2 = tl.zeros((BLOCK_N, BLOCK_C), tl.float32)
    a3 = tl.zeros((BLOCK_N, BLOCK_C), tl.float32)
    a4 = tl.zeros((BLOCK_N, BLOCK_C), tl.float32)
    a5 = tl.zeros((BLOCK_N, BLOCK_C), tl.float32)
    a6 = tl.zeros((BLOCK_N, BLOCK_C), tl.float32)
    a7 = tl.zeros((BLOCK_N, BLOCK_C), tl.float32)
    a8 = tl.zeros((BLOCK_N, BLOCK_C), tl.float32)
    a_bias = tl.zeros((BLOCK_N, BLOCK_C), tl.float32)
    start = chunk * TOKENS_PER_CHUNK
    end = tl.minimum(start + TOKENS_PER_CHUNK, N)
    tok = start.to(tl.int64)
    for off in range(start, end, BLOCK_N):
        n = off + local
        mask = (n < end)[:, None] & valid[None, :]
        row = n // W
        col = n % W
        x_tile = x_batch + tok * s_x_n
        g = tl.load(dy_batch + tok * s_dy_n + rel_dy, mask=mask, other=0.).to(tl.float32)
        if SILU:
            pre = tl.zeros((BLOCK_N, BLOCK_C), tl.float32) + bias[None, :]
            for tap in tl.range(9, loop_unroll_factor=1):
                weight = tl.load(w_ptr + channel * 9 + tap, mask=valid, other=0.).to(tl.float32)
                pre += weight[None, :] * grid_tap(x_tile, rel_x, row, col, W, H, tap, s_x_n, mask, 1)
            sig = tl.sigmoid(pre)
            g = g * sig * (1.0 + pre * (1.0 - sig))
            tl.store(g_batch + tok * s_g_n + rel_g, g.to(g_ptr.dtype.element_ty), mask=mask)
        a0 = tap_product(x_tile, rel_x, row, col, W, H, 0, s_x_n, mask, g, a0)
        a1 = tap_product(x_tile, rel_x, row, col, W, H, 1, s_x_n, mask, g, a1)
        a2 = tap_product(x_tile, rel_x, row, col, W, H, 2, s_x_n, mask, g, a2)
        a3 = tap_product(x_tile, rel_x, row, col, W, H, 3, s_x_n, mask, g, a3)
        a4 = tap_product(x_tile, rel_x, row, col, W, H, 4, s_x_n, mask, g, a4)
        a5 = tap_product(x_tile, rel_x, row, col, W, H, 5, s_x_n, mask, g, a5)
        a6 = tap_product(x_tile, rel_x, row, col, W, H, 6, s_x_n, mask, g, a6)
        a7 = tap_product(x_tile, rel_x, row, col, W, H, 7, s_x_n, mask, g, a7)
        a8 = tap_product(x_tile, rel_x, row, col, W, H, 8, s_x_n, mask, g, a8)
        a_bias += g
        tok += BLOCK_N
    part = part_ptr + (chunk * tl.num_programs(1) + bc).to(tl.int64) * 10 * BLOCK_C + lane
    tl.store(part, tl.sum(a0, axis=0))
    tl.store(part + BLOCK_C, tl.sum(a1, axis=0))
    tl.store(part + 2 * BLOCK_C, tl.sum(a2, axis=0))
    tl.store(part + 3 * BLOCK_C, tl.sum(a3, axis=0))
    tl.store(part + 4 * BLOCK_C, tl.sum(a4, axis=0))
    tl.store(part + 5 * BLOCK_C, tl.sum(a5, axis=0))
    tl.store(part + 6 * BLOCK_C, tl.sum(a6, axis=0))
    tl.store(part + 7 * BLOCK_C, tl.sum(a7, axis=0))
    tl.store(part + 8 * BLOCK_C, tl.sum(a8, axis=0))
    tl.store(part + 9 * BLOCK_C, tl.sum(a_bias, axis=0))


@triton.jit
def _dwconv_grad_input_kernel(g_ptr, dy_ptr, w_ptr, dx_ptr, N, H, W, C, NUM_CBLOCKS,
                              s_g_b, s_g_n, s_dy_b, s_dy_n, s_dx_b, s_dx_n,
                              RESIDUAL: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
                              TAP_UNROLL: tl.constexpr):
    bc = tl.program_id(1)
    b = bc // NUM_CBLOCKS
    channel = (bc % NUM_CBLOCKS) * BLOCK_C + tl.arange(0, BLOCK_C)
    valid = channel < C
    start = tl.program_id(0) * BLOCK_N
    n = start + tl.arange(0, BLOCK_N)
    mask = (n < N)[:, None] & valid[None, :]
    local = tl.arange(0, BLOCK_N)[:, None]
    rel_g = local * s_g_n + channel[None, :]
    g_tile = g_ptr + b.to(tl.int64) * s_g_b + start.to(tl.int64) * s_g_n
    row = n // W
    col = n % W
    acc = tl.zeros((BLOCK_N, BLOCK_C), tl.float32)
    for tap in tl.range(9, loop_unroll_factor=TAP_UNROLL):
        weight = tl.load(w_ptr + channel * 9 + tap, mask=valid, other=0.).to(tl.float32)
        acc += weight[None, :] * grid_tap(g_tile, rel_g, row, col, W, H, tap, s_g_n, mask, -1)
    if RESIDUAL:
        dy = dy_ptr + b.to(tl.int64) * s_dy_b + start.to(tl.int64) * s_dy_n + local * s_dy_n + channel[None, :]
        acc += tl.load(dy, mask=mask, other=0.).to(tl.float32)
    dx = dx_ptr + b.to(tl.int64) * s_dx_b + start.to(tl.int64) * s_dx_n + local * s_dx_n + channel[None, :]
    tl.store(dx, acc.to(dx_ptr.dtype.element_ty), mask=mask)
