"""3x3 neighbourhoods of tokens stored row-major on an H x W grid ((B, H*W, C) tensors), shared by the linear
attention's LePE and the depthwise convolutions: the neighbour loads, and the weight and bias gradients of a
3x3 depthwise kernel summed as ten elementwise accumulators per program (nine taps and the bias) that are
reduced over tokens once, at the end of the program, then over programs by the last program of each channel block
(a deterministic sum, no second launch)."""
import torch
import triton
import triton.language as tl

from .partial_sums import ArrivalCounters, last_to_arrive


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
def tap_sum(acc, tile_ptr, rel, row, col, W, H, stride_n, mask, w_ptr, channel, valid, SIGN: tl.constexpr,
            UNROLL: tl.constexpr):
    """``acc`` + the sum over the 3x3 taps of a depthwise weight (C, 9) times the tile at that tap
    (:func:`grid_tap`), in float32."""
    for tap in tl.range(9, loop_unroll_factor=UNROLL):
        weight = tl.load(w_ptr + channel * 9 + tap, mask=valid, other=0.).to(tl.float32)
        acc += weight[None, :] * grid_tap(tile_ptr, rel, row, col, W, H, tap, stride_n, mask, SIGN)
    return acc


@triton.jit
def token_tile(start, BLOCK_N: tl.constexpr, N, W, valid):
    """Tokens ``start..start + BLOCK_N - 1`` of a program: (indices, tile mask with the lanes ``valid``, grid
    rows, grid columns)."""
    n = start + tl.arange(0, BLOCK_N)
    return n, (n < N)[:, None] & valid[None, :], n // W, n % W


@triton.jit
def grid_tile(program, BLOCK_N: tl.constexpr, TILE_W: tl.constexpr, N, H, W, valid):
    """The tokens of tile ``program`` of a grid cut into tiles of BLOCK_N tokens: (first token, the tokens'
    offsets from it, tile mask with the lanes ``valid``, grid rows, grid columns). TILE_W=0: BLOCK_N consecutive
    tokens (row-major order, rows of the tile may wrap); else BLOCK_N // TILE_W grid rows of TILE_W columns, so
    that the tile holds, besides its own rows, the neighbour rows of all but its first and last row."""
    if TILE_W == 0:
        start = program * BLOCK_N
        local = tl.arange(0, BLOCK_N)
        n, mask, row, col = token_tile(start, BLOCK_N, N, W, valid)
    else:
        tiles_w = tl.cdiv(W, TILE_W)
        row0 = (program // tiles_w) * (BLOCK_N // TILE_W)
        col0 = (program % tiles_w) * TILE_W
        r = tl.arange(0, BLOCK_N) // TILE_W
        c = tl.arange(0, BLOCK_N) % TILE_W
        row, col = row0 + r, col0 + c
        start = row0 * W + col0
        local = r * W + c
        mask = ((row < H) & (col < W))[:, None] & valid[None, :]
    return start, local, mask, row, col


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
def finish_tap_sums(part_ptr, d_weight_ptr, d_bias_ptr, counter_ptr, block, NUM_ROWS, BLOCKS, C, BLOCK_WIDTH,
                    BLOCK_C: tl.constexpr, BLOCK_R: tl.constexpr):
    """Called by each of the NUM_ROWS programs of channel block ``block`` once it stored its tap sums: the last of
    them to arrive sums the block's rows of partials (rows, BLOCKS, 10, BLOCK_C) in row order and stores
    d_weight[c, 0, tap // 3, tap % 3] (taps 0..8) and d_bias[c] (tap 9) in their dtype (deterministic)."""
    if last_to_arrive(counter_ptr + block, NUM_ROWS):
        lane = tl.arange(0, BLOCK_C)
        tap = tl.arange(0, 16)
        channel = block * BLOCK_WIDTH + lane
        valid = (lane < BLOCK_WIDTH) & (channel < C)
        acc = tl.zeros((16, BLOCK_C), tl.float32)
        for r0 in range(0, NUM_ROWS, BLOCK_R):
            r = r0 + tl.arange(0, BLOCK_R)
            offs = (((r[:, None, None] * BLOCKS + block).to(tl.int64) * 10 + tap[None, :, None]) * BLOCK_C
                    + lane[None, None, :])
            mask = (r < NUM_ROWS)[:, None, None] & (tap < 10)[None, :, None]
            acc += tl.sum(tl.load(part_ptr + offs, mask=mask, other=0., cache_modifier='.cg'), 0)
        tl.store(d_weight_ptr + channel[None, :] * 9 + tap[:, None], acc.to(d_weight_ptr.dtype.element_ty),
                 mask=valid[None, :] & (tap < 9)[:, None])
        d_bias = tl.sum(tl.where((tap == 9)[:, None], acc, 0.), 0)
        tl.store(d_bias_ptr + channel, d_bias.to(d_bias_ptr.dtype.element_ty), mask=valid)


class TapGradients:
    """What a kernel calling :func:`finish_tap_sums` needs for one layout: its per-program tap sums are (chunks,
    batch * blocks, 10, BLOCK_C), program rows batch-major over ``blocks`` channel blocks whose first
    ``block_width`` lanes are channels.

    ``outputs(weight)`` makes (d weight (C, 1, 3, 3), d bias (C,)) as fresh contiguous tensors in the weight's
    dtype (torch custom ops must not return views of one buffer); the kernel takes them, then ``args()`` (the
    counters and sizes) and the meta-parameters ``meta``.
    """

    def __init__(self, num_chunks: int, batch: int, blocks: int, block_width: int, channels: int, device):
        num_rows = num_chunks * batch
        self.channels = channels
        self.counters = ArrivalCounters(blocks, device)
        self.sizes = (num_rows, blocks, channels, block_width)
        self.meta = dict(TAP_BLOCK_R=max(1, min(8, triton.next_power_of_2(num_rows))))

    def args(self) -> tuple:
        return (self.counters.get(), *self.sizes)

    def outputs(self, weight: torch.Tensor):
        return (torch.empty((self.channels, 1, 3, 3), dtype=weight.dtype, device=weight.device),
                torch.empty(self.channels, dtype=weight.dtype, device=weight.device))
