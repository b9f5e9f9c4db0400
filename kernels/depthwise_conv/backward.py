"""Weight-gradient kernel, chunked over tokens: the gradient at the convolution's output ``g`` (dy, or
dy * SiLU'(pre) with the pre-activation recomputed from the nine taps, then stored) and the partials of the
weight and bias gradients (per tap, x * g summed elementwise over the chunk, over the tile's tokens at the
end), which the last program of each channel block sums into the gradients. The input gradient, the transposed
taps of g (+ dy for the residual), is a second launch: the forward's tap-sum kernel (forward.py). Writing it
here too, where g is dy, took MLLA-T's stage 1 from 74 to 131 us (benchmarks/NOTES.md): this pass runs only
two programs per SM, and the tap-sum kernel many."""
import triton
import triton.language as tl

from ..activations import silu_grad
from ..grid_taps import finish_tap_sums, grid_tap, store_tap_sums, tap_sum, token_tile, zero_tap_sums


@triton.jit
def tap_product(x_tile, rel, row, col, W, H, tap: tl.constexpr, stride_n, mask, g, acc):
    """acc + x(tap) * g: one tap's elementwise weight-gradient terms."""
    return acc + grid_tap(x_tile, rel, row, col, W, H, tap, stride_n, mask, 1) * g


@triton.jit
def _dwconv_grad_weight_kernel(x_ptr, dy_ptr, w_ptr, b_ptr, g_ptr, part_ptr,
                               N, H, W, C, NUM_CBLOCKS, TOKENS_PER_CHUNK,
                               s_x_b, s_x_n, s_dy_b, s_dy_n, s_g_b, s_g_n,
                               d_weight_ptr, d_bias_ptr, counter_ptr, TAP_ROWS, TAP_BLOCKS, TAP_C, TAP_WIDTH,
                               SILU: tl.constexpr,
                               BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, TAP_BLOCK_R: tl.constexpr,
                               STAGES: tl.constexpr):
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
    a0, a1, a2, a3, a4, a5, a6, a7, a8, a_bias = zero_tap_sums(BLOCK_N, BLOCK_C)
    start = chunk * TOKENS_PER_CHUNK
    end = tl.minimum(start + TOKENS_PER_CHUNK, N)
    tok = start.to(tl.int64)
    for off in tl.range(start, end, BLOCK_N, num_stages=STAGES):
        n, mask, row, col = token_tile(off, BLOCK_N, end, W, valid)
        x_tile = x_batch + tok * s_x_n
        g = tl.load(dy_batch + tok * s_dy_n + rel_dy, mask=mask, other=0.).to(tl.float32)
        if SILU:
            pre = tap_sum(tl.zeros((BLOCK_N, BLOCK_C), tl.float32) + bias[None, :], x_tile, rel_x, row, col, W, H,
                          s_x_n, mask, w_ptr, channel, valid, 1, 1)
            g = g * silu_grad(pre)
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
    store_tap_sums(part, BLOCK_C, a0, a1, a2, a3, a4, a5, a6, a7, a8, a_bias)
    finish_tap_sums(part_ptr, d_weight_ptr, d_bias_ptr, counter_ptr, bc % NUM_CBLOCKS, TAP_ROWS, TAP_BLOCKS, TAP_C,
                    TAP_WIDTH, BLOCK_C, TAP_BLOCK_R)
