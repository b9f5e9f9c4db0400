"""Forward kernel: one (token tile, batch, channel block) per program; nine neighbour loads (mostly cache
hits), bias, activation and residual fused, float32 arithmetic."""
import triton
import triton.language as tl

from ..grid_taps import grid_tap


@triton.jit
def _dwconv_forward_kernel(x_ptr, w_ptr, b_ptr, out_ptr, N, H, W, C, NUM_CBLOCKS,
                           s_x_b, s_x_n, s_o_b, s_o_n,
                           RESIDUAL: tl.constexpr, SILU: tl.constexpr,
                           BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, TAP_UNROLL: tl.constexpr):
    bc = tl.program_id(1)
    b = bc // NUM_CBLOCKS
    channel = (bc % NUM_CBLOCKS) * BLOCK_C + tl.arange(0, BLOCK_C)
    valid = channel < C
    start = tl.program_id(0) * BLOCK_N
    n = start + tl.arange(0, BLOCK_N)
    mask = (n < N)[:, None] & valid[None, :]
    local = tl.arange(0, BLOCK_N)[:, None]
    rel_x = local * s_x_n + channel[None, :]
    x_tile = x_ptr + b.to(tl.int64) * s_x_b + start.to(tl.int64) * s_x_n
    row = n // W
    col = n % W
    bias = tl.load(b_ptr + channel, mask=valid, other=0.).to(tl.float32)
    acc = tl.zeros((BLOCK_N, BLOCK_C), tl.float32) + bias[None, :]
    for tap in tl.range(9, loop_unroll_factor=TAP_UNROLL):
        weight = tl.load(w_ptr + channel * 9 + tap, mask=valid, other=0.).to(tl.float32)
        acc += weight[None, :] * grid_tap(x_tile, rel_x, row, col, W, H, tap, s_x_n, mask, 1)
    if SILU:
        acc = acc * tl.sigmoid(acc)
    if RESIDUAL:
        acc += tl.load(x_tile + rel_x, mask=mask, other=0.).to(tl.float32)
    out = out_ptr + b.to(tl.int64) * s_o_b + start.to(tl.int64) * s_o_n + local * s_o_n + channel[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=mask)
