"""The tap-sum kernel: out = act(sum over the 3x3 taps of w[tap] * src(tap) + bias) + residual, one (token tile,
batch, channel block) per program; nine neighbour loads (mostly cache hits: a tile of several grid rows holds
part of its tokens' upper and lower neighbours itself, grid_taps.grid_tile), float32 arithmetic. The forward
runs it on x (taps at +offsets, bias, optional SiLU, optional residual x); the backward on g with the transposed
taps (-offsets) and dy as the residual, for the input gradient (backward.py)."""
import triton
import triton.language as tl

from ..activations import silu
from ..grid_taps import grid_tile, tap_sum


@triton.jit
def _tap_sum_kernel(src_ptr, w_ptr, b_ptr, res_ptr, out_ptr, N, H, W, C, NUM_CBLOCKS,
                    s_src_b, s_src_n, s_res_b, s_res_n, s_o_b, s_o_n,
                    SIGN: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr, RESIDUAL: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, TILE_W: tl.constexpr, TAP_UNROLL: tl.constexpr):
    bc = tl.program_id(1)
    b = bc // NUM_CBLOCKS
    channel = (bc % NUM_CBLOCKS) * BLOCK_C + tl.arange(0, BLOCK_C)
    valid = channel < C
    start, local, mask, row, col = grid_tile(tl.program_id(0), BLOCK_N, TILE_W, N, H, W, valid)
    local = local[:, None]
    rel_src = local * s_src_n + channel[None, :]
    src_tile = src_ptr + b.to(tl.int64) * s_src_b + start.to(tl.int64) * s_src_n
    acc = tl.zeros((BLOCK_N, BLOCK_C), tl.float32)
    if HAS_BIAS:
        acc += tl.load(b_ptr + channel, mask=valid, other=0.).to(tl.float32)[None, :]
    acc = tap_sum(acc, src_tile, rel_src, row, col, W, H, s_src_n, mask, w_ptr, channel, valid, SIGN, TAP_UNROLL)
    if SILU:
        acc = silu(acc)
    if RESIDUAL:
        res = res_ptr + b.to(tl.int64) * s_res_b + start.to(tl.int64) * s_res_n + local * s_res_n + channel[None, :]
        acc += tl.load(res, mask=mask, other=0.).to(tl.float32)
    out = out_ptr + b.to(tl.int64) * s_o_b + start.to(tl.int64) * s_o_n + local * s_o_n + channel[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=mask)
