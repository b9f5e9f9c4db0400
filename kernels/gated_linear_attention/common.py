"""Triton helpers shared by the forward and backward kernels.

A program owns one chunk of T consecutive scan positions of one (batch, head). Position t of the scan reads the
token ``scan_positions`` gives (index arithmetic: reversed and column-major scans need no copies). Keys are
handled in slices of KS channels (one slice of all K channels when a head has one decay; 16-channel slices when
every key channel has its own, whose intra-chunk weights are (T, T, KS) tensors). Decays enter only as exp of
differences of cumulative log decays that are never positive, so nothing overflows.
"""
import triton
import triton.language as tl


@triton.jit
def scan_positions(chunk, N, GRID_H, GRID_W, T: tl.constexpr, REVERSE: tl.constexpr, COLUMNS: tl.constexpr):
    """(token index (int64), valid) of the T scan positions of ``chunk``."""
    t = chunk * T + tl.arange(0, T)
    valid = t < N
    if REVERSE:
        t = N - 1 - t
    if COLUMNS:
        t = (t % GRID_H) * GRID_W + t // GRID_H
    return tl.where(valid, t, 0).to(tl.int64), valid


@triton.jit
def load_rows(ptr, pos, stride_n, cols, width, valid):
    """(T, len(cols)) float32 tile: token rows ``pos`` of a (tokens, width) slice at ``ptr``, zero outside."""
    return tl.load(ptr + pos[:, None] * stride_n + cols[None, :], mask=valid[:, None] & (cols < width)[None, :],
                   other=0.).to(tl.float32)


@triton.jit
def store_rows(ptr, value, pos, stride_n, cols, width, valid, ACCUMULATE: tl.constexpr):
    """Store a (T, len(cols)) tile at token rows ``pos``; with ACCUMULATE add it to what is there."""
    addr = ptr + pos[:, None] * stride_n + cols[None, :]
    mask = valid[:, None] & (cols < width)[None, :]
    if ACCUMULATE:
        value += tl.load(addr, mask=mask, other=0.)
    tl.store(addr, value.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def log_decays(g_ptr, pos, stride_n, cols, width, valid, T: tl.constexpr, PER_CHANNEL: tl.constexpr):
    """Cumulative log decays of a chunk from its start through each position, (T, KS) or (T, 1), and of the
    whole chunk, (1, KS) or (1, 1). Positions past the sequence decay by 1 (log 0)."""
    if PER_CHANNEL:
        cum = tl.cumsum(load_rows(g_ptr, pos, stride_n, cols, width, valid), axis=0)
    else:  # a scan of the (T,) vector: Triton 3.6 cannot lower one along a (T, 1) tile for sm_90
        cum = tl.cumsum(tl.load(g_ptr + pos * stride_n, mask=valid, other=0.).to(tl.float32), axis=0)[:, None]
    last = (tl.arange(0, T) == T - 1)[:, None]
    return cum, tl.sum(tl.where(last, cum, 0.), axis=0)[None, :]


@triton.jit
def decay_matrix(cum, T: tl.constexpr):
    """(T, T) weights exp(cum_i - cum_j) for j <= i, 0 above the diagonal (one decay per head)."""
    i = tl.arange(0, T)[:, None]
    j = tl.arange(0, T)[None, :]
    diff = tl.reshape(cum, (T, 1)) - tl.reshape(cum, (1, T))
    return tl.where(j <= i, tl.exp(tl.minimum(diff, 0.)), 0.)


@triton.jit
def channel_decays(cum, T: tl.constexpr):
    """(T, T, KS) weights exp(cum_ik - cum_jk) for j <= i, 0 above the diagonal (one decay per key channel)."""
    i = tl.arange(0, T)[:, None, None]
    j = tl.arange(0, T)[None, :, None]
    diff = cum[:, None, :] - cum[None, :, :]
    return tl.where(j <= i, tl.exp(tl.minimum(diff, 0.)), 0.)


@triton.jit
def mm(a, b, DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr):
    """a @ b with float32 accumulation, operands in DOT_DTYPE."""
    return tl.dot(a.to(DOT_DTYPE), b.to(DOT_DTYPE), input_precision=PRECISION)


def state_size(block_k: int, block_v: int) -> int:
    """Floats per chunk state row: a (BK, BV) matrix, a BK vector (the normalizer's), the chunk's BK log decays."""
    return block_k * block_v + 2 * block_k


@triton.jit
def load_state(row_ptr, k, width_k, cols, width_v, BK: tl.constexpr, BV: tl.constexpr):
    """Key channels ``k`` of a state row: (len(k), BV) rows of its matrix and (1, len(k)) of its vector."""
    ok = k < width_k
    matrix = tl.load(row_ptr + k[:, None] * BV + cols[None, :], mask=ok[:, None] & (cols < width_v)[None, :],
                     other=0.)
    return matrix, tl.load(row_ptr + BK * BV + k, mask=ok, other=0.)[None, :]


@triton.jit
def store_state(row_ptr, k, matrix, vector, total, BK: tl.constexpr, BV: tl.constexpr):
    """Store key channels ``k`` of a state row: matrix (len(k), BV), vector and chunk log decay (1, len(k))."""
    cols = tl.arange(0, BV)
    tl.store(row_ptr + k[:, None] * BV + cols[None, :], matrix)
    tl.store(row_ptr + BK * BV + k, tl.reshape(vector, (k.shape[0],)))
    tl.store(row_ptr + BK * BV + BK + k, tl.reshape(total + tl.zeros(vector.shape, tl.float32), (k.shape[0],)))


@triton.jit
def _state_pass_kernel(state_ptr, NUM_CHUNKS, BK: tl.constexpr, BV: tl.constexpr, E: tl.constexpr,
                       BACKWARD: tl.constexpr):
    """Chunk-local states -> the states entering each chunk, in place: x_c = exp(total_(c-1)) x_(c-1) +
    local_(c-1) in scan order, or from the last chunk back to the first (BACKWARD: the gradient states, where
    x_c gathers the chunks after c). Each program walks the chunks of E elements of one (batch, head)."""
    bh = tl.program_id(0)
    e = tl.program_id(1) * E + tl.arange(0, E)
    ok = e < BK * BV + BK
    key = tl.where(e < BK * BV, e // BV, e - BK * BV)
    base = state_ptr + bh.to(tl.int64) * NUM_CHUNKS * (BK * BV + 2 * BK)
    carry = tl.zeros((E,), tl.float32)
    for step in range(NUM_CHUNKS):
        chunk = NUM_CHUNKS - 1 - step if BACKWARD else step
        row = base + chunk * (BK * BV + 2 * BK)
        local = tl.load(row + e, mask=ok, other=0.)
        decay = tl.exp(tl.load(row + BK * BV + BK + key, mask=ok, other=0.))
        tl.store(row + e, carry, mask=ok)
        carry = decay * carry + local
