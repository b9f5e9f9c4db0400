"""Forward kernels, one scan direction at a time (SSD-style chunking):

1. ``_chunk_state_kernel``: per chunk, the state it adds on its own: sum_j k_j^T v_j with k_j decayed to the
   chunk end, and sum_j k_j (the normalizer's). The backward runs the same kernel on (q, dO, dz).
2. ``_state_pass_kernel`` (common.py): turns those into the states entering each chunk,
   S_c = exp(total_(c-1)) S_(c-1) + local_(c-1), an associative scan over blocks of chunks (K x V per head).
3. ``_chunk_output_kernel``: per chunk, the exact intra-chunk products plus the entering state:
   o_i = sum_(j<=i in chunk) (q_i exp(cum_i - cum_j)) . k_j v_j + (q_i exp(cum_i)) S_c, likewise z_i.

Every program writes its own part of the output (several directions add up in launch order): deterministic.
"""
import triton
import triton.language as tl

from .common import (chunk_program, decay_matrix, key_slice, load_rows, load_state_matrix, load_state_vector,
                     log_decays, mm, mm_float32, store_rows, store_state, store_state_vector)


@triton.jit
def _chunk_state_kernel(x_ptr, y_ptr, w_ptr, g_ptr, state_ptr,
                        N, NUM_HEADS, GRID_H, GRID_W, NUM_CHUNKS,
                        sx_b, sx_n, sx_h, sy_b, sy_n, sy_h, sw_b, sw_n, sw_h, sg_b, sg_n, sg_h,
                        K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, KS: tl.constexpr,
                        VB: tl.constexpr, T: tl.constexpr, PER_CHANNEL: tl.constexpr, REVERSE: tl.constexpr,
                        COLUMNS: tl.constexpr, FROM_START: tl.constexpr, HAS_W: tl.constexpr,
                        DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr, FLOAT32_PRODUCTS: tl.constexpr,
                        Y_EXACT: tl.constexpr):
    """State row of one chunk: (sum_t x'_t^T y_t, sum_t x'_t w_t, chunk log decay), with x' = x decayed to the
    chunk end (keys: the forward) or from the chunk start (queries: the backward); w = 1 without HAS_W. With
    FLOAT32_PRODUCTS the products are float32-accurate (``mm_float32``; Y_EXACT: y holds 16-bit input values)."""
    chunk, bh, b, h, pos, valid = chunk_program(N, NUM_HEADS, GRID_H, GRID_W, T, REVERSE, COLUMNS)
    if HAS_W:
        w = tl.load(w_ptr + b * sw_b + pos * sw_n + h * sw_h, mask=valid, other=0.).to(tl.float32)[:, None]
    else:
        w = valid.to(tl.float32)[:, None]
    g_base = g_ptr + b * sg_b + h * sg_h
    cum, total = log_decays(g_base, pos, sg_n, tl.arange(0, KS), K, valid, T, False)  # per channel: per slice
    row = state_ptr + (bh.to(tl.int64) * NUM_CHUNKS + chunk) * (BK * BV + 2 * BK)
    for start in tl.static_range(0, BK, KS):
        keys = start + tl.arange(0, KS)
        x = load_rows(x_ptr + b * sx_b + h * sx_h, pos, sx_n, keys, K, valid)
        if PER_CHANNEL:
            cum, total = log_decays(g_base, pos, sg_n, keys, K, valid, T, True)
        if FROM_START:
            x = x * tl.exp(cum)
        else:
            x = x * tl.exp(total - cum)
        store_state_vector(row, keys, tl.sum(x * w, axis=0)[None, :], total, BK, BV)
        for v_start in range(0, BV, VB):
            cols = v_start + tl.arange(0, VB)
            y = load_rows(y_ptr + b * sy_b + h * sy_h, pos, sy_n, cols, V, valid)
            if FLOAT32_PRODUCTS:
                product = mm_float32(tl.trans(x), y, False, Y_EXACT)
            else:
                product = mm(tl.trans(x), y, DOT_DTYPE, PRECISION)
            store_state(row, keys, cols, product, BV)


@triton.jit
def _chunk_output_kernel(q_ptr, k_ptr, v_ptr, g_ptr, state_ptr, o_ptr, z_ptr,
                         N, NUM_HEADS, GRID_H, GRID_W, NUM_CHUNKS,
                         sq_b, sq_n, sq_h, sk_b, sk_n, sk_h, sv_b, sv_n, sv_h, sg_b, sg_n, sg_h,
                         so_b, so_n, so_h, sz_b, sz_n, sz_h,
                         K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, KS: tl.constexpr,
                         VB: tl.constexpr, T: tl.constexpr, PER_CHANNEL: tl.constexpr, REVERSE: tl.constexpr,
                         COLUMNS: tl.constexpr, ACCUMULATE: tl.constexpr, DOT_DTYPE: tl.constexpr,
                         PRECISION: tl.constexpr):
    chunk, bh, b, h, pos, valid = chunk_program(N, NUM_HEADS, GRID_H, GRID_W, T, REVERSE, COLUMNS)
    q_base = q_ptr + b * sq_b + h * sq_h
    g_base = g_ptr + b * sg_b + h * sg_h
    cum, total = log_decays(g_base, pos, sg_n, tl.arange(0, KS), K, valid, T, False)  # per channel: per slice
    row = state_ptr + (bh.to(tl.int64) * NUM_CHUNKS + chunk) * (BK * BV + 2 * BK)
    attn = tl.zeros((T, T), tl.float32)
    z = tl.zeros((T,), tl.float32)
    for start in tl.static_range(0, BK, KS):
        keys = start + tl.arange(0, KS)
        q, k, cum, total, _, term = key_slice(q_base, k_ptr + b * sk_b + h * sk_h, g_base, pos, sq_n, sk_n, sg_n,
                                              keys, K, valid, cum, total, T, PER_CHANNEL, DOT_DTYPE, PRECISION)
        attn += term
        z += tl.sum(q * tl.exp(cum) * load_state_vector(row, keys, K, BK, BV), axis=1)
    if not PER_CHANNEL:
        attn = attn * decay_matrix(cum, T)
    z += tl.sum(attn, axis=1)
    z_addr = z_ptr + b * sz_b + pos * sz_n + h * sz_h
    if ACCUMULATE:
        z += tl.load(z_addr, mask=valid, other=0.)
    tl.store(z_addr, z, mask=valid)
    for v_start in range(0, BV, VB):
        cols = v_start + tl.arange(0, VB)
        o = mm(attn, load_rows(v_ptr + b * sv_b + h * sv_h, pos, sv_n, cols, V, valid), DOT_DTYPE, PRECISION)
        for start in tl.static_range(0, BK, KS):
            keys = start + tl.arange(0, KS)
            q_decayed = load_rows(q_base, pos, sq_n, keys, K, valid)
            if PER_CHANNEL:
                slice_cum, slice_total = log_decays(g_base, pos, sg_n, keys, K, valid, T, True)
                q_decayed *= tl.exp(slice_cum)
            else:
                q_decayed *= tl.exp(cum)
            o += mm(q_decayed, load_state_matrix(row, keys, K, cols, V, BV), DOT_DTYPE, PRECISION)
        store_rows(o_ptr + b * so_b + h * so_h, o, pos, so_n, cols, V, valid, ACCUMULATE)
