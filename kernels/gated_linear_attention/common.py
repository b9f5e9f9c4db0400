"""Triton helpers shared by the forward and backward kernels.

A program owns one chunk of T consecutive scan positions of one (batch, head). Position t of the scan reads the
token ``chunk_program`` gives (index arithmetic: reversed and column-major scans need no copies). Keys are
handled in slices of KS channels (one slice of all K channels when a head has one decay; 16-channel slices when
every key channel has its own, whose intra-chunk weights are (T, T, KS) tensors), values in blocks of VB
channels (a single head carries all C channels as values). Decays enter only as exp of differences of
cumulative log decays that are never positive, so nothing overflows.
"""
import triton
import triton.language as tl


@triton.jit
def chunk_program(N, NUM_HEADS, GRID_H, GRID_W, T: tl.constexpr, REVERSE: tl.constexpr,
                  COLUMNS: tl.constexpr):
    """What a program of a (chunks, batch * heads) grid owns: (chunk, batch * heads index, batch (int64), head,
    token index of each of its scan positions (int64), valid positions)."""
    chunk = tl.program_id(0)
    bh = tl.program_id(1)
    t = chunk * T + tl.arange(0, T)
    valid = t < N
    if REVERSE:
        t = N - 1 - t
    if COLUMNS:
        t = (t % GRID_H) * GRID_W + t // GRID_H
    return chunk, bh, (bh // NUM_HEADS).to(tl.int64), bh % NUM_HEADS, tl.where(valid, t, 0).to(tl.int64), valid


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


@triton.jit
def tf32_high(x):
    """float32 ``x`` cut to tf32's 10 mantissa bits, which a tf32 product reads exactly; ``x - tf32_high(x)`` is
    exact too (at most 13 bits)."""
    return (x.to(tl.uint32, bitcast=True) & 0xFFFFE000).to(tl.float32, bitcast=True)


@triton.jit
def mm_float32(a, b, A_EXACT: tl.constexpr, B_EXACT: tl.constexpr):
    """a @ b of float32 tiles, accurate to float32 as tf32x3 is, in fewer tensor-core products where one operand
    holds input values (``*_EXACT``: bfloat16 or float16 inputs, which tf32 holds exactly): the other operand is
    split into its leading tf32 bits and the rest, two tf32 products where tf32x3 takes three."""
    if A_EXACT:
        high = tf32_high(b)
        return tl.dot(a, high, input_precision='tf32') + tl.dot(a, b - high, input_precision='tf32')
    elif B_EXACT:
        high = tf32_high(a)
        return tl.dot(high, b, input_precision='tf32') + tl.dot(a - high, b, input_precision='tf32')
    else:
        return tl.dot(a, b, input_precision='tf32x3')


def state_size(block_k: int, block_v: int) -> int:
    """Floats per chunk state row: a (BK, BV) matrix, a BK vector (the normalizer's), the chunk's BK log decays."""
    return block_k * block_v + 2 * block_k


@triton.jit
def load_state_matrix(row_ptr, keys, K, cols, V, BV: tl.constexpr):
    """Rows ``keys``, columns ``cols`` of a state row's (BK, BV) matrix."""
    return tl.load(row_ptr + keys[:, None] * BV + cols[None, :], mask=(keys < K)[:, None] & (cols < V)[None, :],
                   other=0.)


@triton.jit
def load_state_vector(row_ptr, keys, K, BK: tl.constexpr, BV: tl.constexpr):
    """Entries ``keys`` of a state row's vector, as a (1, len(keys)) row."""
    return tl.load(row_ptr + BK * BV + keys, mask=keys < K, other=0.)[None, :]


@triton.jit
def state_scaling_grad(state_row, grad_state_row, has_next, keys, K, V, BK: tl.constexpr, BV: tl.constexpr,
                       VB: tl.constexpr):
    """(1, len(keys)): per key channel, sum over values of S_(c+1) * R_c plus s_(c+1) * r_c, with S_(c+1), s_(c+1)
    the state row after ``state_row`` (the states entering the next chunk; zeros after the last chunk) and
    R_c, r_c the gradient state row ``grad_state_row``: the gradient of scaling the state that leaves the chunk."""
    next_row = state_row + BK * BV + 2 * BK
    keys_read = tl.where(has_next, K, 0)  # no key is read after the last chunk
    total = load_state_vector(next_row, keys, keys_read, BK, BV) * load_state_vector(grad_state_row, keys, K, BK, BV)
    for v_start in tl.static_range(0, BV, VB):
        cols = v_start + tl.arange(0, VB)
        total += tl.sum(load_state_matrix(next_row, keys, keys_read, cols, V, BV) *
                        load_state_matrix(grad_state_row, keys, K, cols, V, BV), axis=1)[None, :]
    return total


@triton.jit
def store_state(row_ptr, keys, cols, matrix, BV: tl.constexpr):
    """Store a (len(keys), len(cols)) block of a state row's matrix."""
    tl.store(row_ptr + keys[:, None] * BV + cols[None, :], matrix)


@triton.jit
def store_state_vector(row_ptr, keys, vector, total, BK: tl.constexpr, BV: tl.constexpr):
    """Store entries ``keys`` of a state row's vector and of its chunk log decays, both (1, len(keys))."""
    tl.store(row_ptr + BK * BV + keys, tl.reshape(vector, (keys.shape[0],)))
    tl.store(row_ptr + BK * BV + BK + keys, tl.reshape(total + tl.zeros(vector.shape, tl.float32), (keys.shape[0],)))


@triton.jit
def compose(decay_left, value_left, decay_right, value_right):
    """x -> decay_left x + value_left, then x -> decay_right x + value_right (one step of the state pass)."""
    return decay_left * decay_right, decay_right * value_left + value_right


@triton.jit
def _state_pass_kernel(local_ptr, out_ptr, NUM_CHUNKS, BK: tl.constexpr, BV: tl.constexpr, E: tl.constexpr,
                       P: tl.constexpr, BACKWARD: tl.constexpr):
    """Chunk-local states -> the states entering each chunk: x_c = exp(total_(c-1)) x_(c-1) + local_(c-1) in scan
    order, or from the last chunk back to the first (BACKWARD: the gradient states, where x_c gathers the chunks
    after c). A program owns E elements of the state rows of one (batch, head) and walks the chunks P at a time:
    an associative scan over the P chunks in registers, the carry from the P before added (NUM_CHUNKS / P
    sequential steps, not NUM_CHUNKS)."""
    bh = tl.program_id(0)
    e = tl.program_id(1) * E + tl.arange(0, E)
    ok = e < BK * BV + 2 * BK  # the rows' log-decay slots get zeros (the outputs are never read there)
    carried = e < BK * BV + BK
    key = tl.where(e < BK * BV, e // BV, tl.where(carried, e - BK * BV, 0))
    row = BK * BV + 2 * BK
    local = local_ptr + bh.to(tl.int64) * NUM_CHUNKS * row
    out = out_ptr + bh.to(tl.int64) * NUM_CHUNKS * row
    tl.store(out + (NUM_CHUNKS - 1 if BACKWARD else 0) * row + e, tl.zeros((E,), tl.float32), mask=ok)
    carry = tl.zeros((E,), tl.float32)
    last = (tl.arange(0, P) == P - 1)[:, None]
    for step in range(0, NUM_CHUNKS, P):
        if BACKWARD:
            chunk = NUM_CHUNKS - 1 - step - tl.arange(0, P)
            target = chunk - 1
        else:
            chunk = step + tl.arange(0, P)
            target = chunk + 1
        mask = ((chunk >= 0) & (chunk < NUM_CHUNKS))[:, None] & ok[None, :]
        rows = local + chunk[:, None] * row
        value = tl.load(rows + e[None, :], mask=mask & carried[None, :], other=0.)
        decay = tl.exp(tl.load(rows + BK * BV + BK + key[None, :], mask=mask & carried[None, :], other=0.))
        decay, value = tl.associative_scan((decay, value), axis=0, combine_fn=compose)
        value += decay * carry[None, :]
        tl.store(out + target[:, None] * row + e[None, :], value,
                 mask=mask & ((target >= 0) & (target < NUM_CHUNKS))[:, None])
        carry = tl.sum(tl.where(last, value, 0.), axis=0)


@triton.jit
def key_slice(q_base, k_base, g_base, pos, sq_n, sk_n, sg_n, keys, K, valid, cum, total, T: tl.constexpr,
              PER_CHANNEL: tl.constexpr, DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr):
    """One key slice of a chunk: q and k (T, KS), its cumulative log decays (loaded for the slice with one decay per
    key channel, else those given), the (T, T, KS) channel decays (per channel; else a placeholder) and its term
    of the attention weights q_i . k_j (with the channel decays; one decay per head is applied to the sum)."""
    q = load_rows(q_base, pos, sq_n, keys, K, valid)
    k = load_rows(k_base, pos, sk_n, keys, K, valid)
    if PER_CHANNEL:
        cum, total = log_decays(g_base, pos, sg_n, keys, K, valid, T, True)
        channel = channel_decays(cum, T)
        attn = tl.sum(q[:, None, :] * k[None, :, :] * channel, axis=2)
    else:
        attn = mm(q, tl.trans(k), DOT_DTYPE, PRECISION)
        channel = attn
    return q, k, cum, total, channel, attn
