"""Triton helpers for 3x3 neighbourhoods of tokens stored row-major on an H x W grid ((B, H*W, C) tensors),
shared by the linear attention's LePE and the depthwise convolutions."""
import triton
import triton.language as tl


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
