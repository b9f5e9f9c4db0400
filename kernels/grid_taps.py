"""3x3 neighbourhoods of tokens stored row-major on an H x W grid ((B, H*W, C) tensors), shared by the linear
attention's LePE and the depthwise convolutions: the neighbour loads, and the weight and bias gradients of a
3x3 depthwise kernel summed as ten elementwise accumulators per program (nine taps and the bias) that are
reduced over tokens once, at the end of the program, then over programs by a deterministic sum."""
import torch
import triton
import triton.language as tl

from .dependent_launch import follow_previous_grid
from .launcher import Launch


@triton.jit
def grid_tap(tile_ptr, rel, row, col, W, H, tap, stride_n, mask, SIGN: tl.constexpr):
    """The tile at the 3x3 neighbour ``tap`` (0..8, row-major over dy, dx in -1..1) of a token tile, in float32.

    ``tile_ptr + rel`` addresses the tile itself (rel: int32 offsets of its tokens and channels), ``row`` and
    ``col`` are its tokens' grid positions, ``mask`` its valid tokens and channels. The neighbour tile is the
    same offsets shifted by a scalar; out-of-grid neighbours read as 0. SIGN=1 reads (row + dy, col + dx) (a
    convolution), SIGN=-1 reads (row - dy, col - dx) (its transpose).
    """
    dy = SIGN * (tap // 3 - 1)
    dx = SIGN * (tap % 3 - 1)
    inside = (row + dy >= 0) & (row + dy < H) & (col + dx >= 0) & (col + dx < W)
    return tl.load(tile_ptr + (dy * W + dx) * stride_n + rel, mask=mask & inside[:, None], other=0.).to(tl.float32)


@triton.jit
def token_tile(start, BLOCK_N: tl.constexpr, N, W, valid):
    """Tokens ``start..start + BLOCK_N - 1`` of a program: (indices, tile mask with the lanes ``valid``, grid
    rows, grid columns)."""
    n = start + tl.arange(0, BLOCK_N)
    return n, (n < N)[:, None] & valid[None, :], n // W, n % W


@triton.jit
def zero_tap_sums(BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """Ten zero (BLOCK_N, BLOCK_C) float32 accumulators: nine taps and the bias."""
    z = tl.zeros((BLOCK_N, BLOCK_C), tl.float32)
    return z, z, z, z, z, z, z, z, z, z


@triton.jit
def store_tap_sums(ptr, BLOCK_C: tl.constexpr, a0, a1, a2, a3, a4, a5, a6, a7, a8, a_bias):
    """Reduce the ten accumulators over their tokens and store them as rows 0..9 of BLOCK_C values at ``ptr``
    (a (BLOCK_C,) block of pointers)."""
    tl.store(ptr, tl.sum(a0, axis=0))
    tl.store(ptr + BLOCK_C, tl.sum(a1, axis=0))
    tl.store(ptr + 2 * BLOCK_C, tl.sum(a2, axis=0))
    tl.store(ptr + 3 * BLOCK_C, tl.sum(a3, axis=0))
    tl.store(ptr + 4 * BLOCK_C, tl.sum(a4, axis=0))
    tl.store(ptr + 5 * BLOCK_C, tl.sum(a5, axis=0))
    tl.store(ptr + 6 * BLOCK_C, tl.sum(a6, axis=0))
    tl.store(ptr + 7 * BLOCK_C, tl.sum(a7, axis=0))
    tl.store(ptr + 8 * BLOCK_C, tl.sum(a8, axis=0))
    tl.store(ptr + 9 * BLOCK_C, tl.sum(a_bias, axis=0))


@triton.jit
def _tap_gradients_kernel(part_ptr, d_weight_ptr, d_bias_ptr, NUM_ROWS, BLOCKS, C, BLOCK_WIDTH,
                          BLOCK_C: tl.constexpr, BLOCK_R: tl.constexpr, PDL: tl.constexpr):
    """Program (channel block, tap): the sum over chunks and batch of row ``tap`` of the partials, stored as
    d_weight[c, 0, tap // 3, tap % 3] (taps 0..8) or d_bias[c] (tap 9) in their dtype (deterministic order)."""
    follow_previous_grid(PDL)
    block = tl.program_id(0)
    tap = tl.program_id(1)
    lane = tl.arange(0, BLOCK_C)
    channel = block * BLOCK_WIDTH + lane
    valid = (lane < BLOCK_WIDTH) & (channel < C)
    acc = tl.zeros((BLOCK_C,), tl.float32)
    for r0 in range(0, NUM_ROWS, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)
        offs = ((r[:, None] * BLOCKS + block).to(tl.int64) * 10 + tap) * BLOCK_C + lane[None, :]
        acc += tl.sum(tl.load(part_ptr + offs, mask=(r < NUM_ROWS)[:, None], other=0.), 0)
    tl.store(d_weight_ptr + channel * 9 + tap, acc.to(d_weight_ptr.dtype.element_ty), mask=valid & (tap < 9))
    tl.store(d_bias_ptr + channel, acc.to(d_bias_ptr.dtype.element_ty), mask=valid & (tap == 9))


class TapGradients:
    """The launch that turns per-program tap sums (chunks, batch * blocks, 10, BLOCK_C) into (d weight (C, 1, 3, 3),
    d bias (C,)) for one layout.

    Program rows are batch-major over ``blocks`` channel blocks whose first ``block_width`` lanes are channels. One
    launch writes both results as fresh contiguous tensors in the weight's dtype (torch custom ops must not return
    views of one buffer). ``pdl``: launch as a dependent launch (see dependent_launch.py).
    """

    def __init__(self, num_chunks: int, batch: int, blocks: int, block_width: int, block_c: int, channels: int,
                 pdl: bool = False):
        num_rows = num_chunks * batch
        self.channels = channels
        self.args = (num_rows, blocks, channels, block_width)
        self.launch = Launch(_tap_gradients_kernel, (blocks, 10), BLOCK_C=block_c,
                             BLOCK_R=min(32, triton.next_power_of_2(num_rows)), PDL=pdl, launch_pdl=pdl)

    def __call__(self, part: torch.Tensor, weight: torch.Tensor):
        d_weight = torch.empty((self.channels, 1, 3, 3), dtype=weight.dtype, device=weight.device)
        d_bias = torch.empty(self.channels, dtype=weight.dtype, device=weight.device)
        self.launch(part, d_weight, d_bias, *self.args)
        return d_weight, d_bias
