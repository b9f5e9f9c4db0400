"""Backward kernel, one scan direction at a time.

With w_ij = dO_i . v_j + dz_i (o and z share the attention weights; z is o with v = 1) and the weights
A_ij = q_i . (k_j exp(cum_i - cum_j)) for j <= i in a chunk:

    dq_i = sum_(j<=i) w_ij k_j exp(cum_i - cum_j) + exp(cum_i) (S_c dO_i + s_c dz_i)
    dk_j = sum_(i>=j) w_ij q_i exp(cum_i - cum_j) + exp(total - cum_j) (R_c v_j + r_c)
    dv_j = sum_(i>=j) A_ij dO_i + (k_j exp(total - cum_j)) R_c

S_c, s_c: the forward states entering the chunk; R_c, r_c: the gradient states leaving it (sum over later
positions i of (q_i decayed to the chunk end)^T dO_i and of q_i dz_i, built by the forward's two state kernels on
(q, dO, dz)). The log decays' gradient follows from dq and dk: the cumulative log decay of position t has
gradient q_t dq_t - k_t dk_t (summed over key channels when a head has one decay), and log decay t enters every
cumulative value from t on, so its gradient is the sum of those terms over positions s >= t of the scan. Their
sum over all positions is zero (shifting every cumulative value alike changes nothing), so a running sum over
the whole scan is a small difference of large partial sums. Each chunk therefore sums only its own positions
and takes the rest, the sum over every position after the chunk, in closed form: it is the gradient of scaling
the state that leaves the chunk, sum(S_(c+1) * R_c) + sum(s_(c+1) * r_c) (per key channel when every key
channel has its own decay), with S_(c+1), s_(c+1) the states entering the next chunk.
"""
import triton
import triton.language as tl

from .common import (chunk_program, decay_matrix, key_slice, load_rows, load_state_matrix, load_state_vector,
                     log_decays, mm, mm_float32, state_scaling_grad, store_rows)


@triton.jit
def _chunk_backward_kernel(q_ptr, k_ptr, v_ptr, g_ptr, do_ptr, dz_ptr, state_ptr, grad_state_ptr,
                           dq_ptr, dk_ptr, dv_ptr, dcum_ptr,
                           N, NUM_HEADS, GRID_H, GRID_W, NUM_CHUNKS,
                           sq_b, sq_n, sq_h, sk_b, sk_n, sk_h, sv_b, sv_n, sv_h, sg_b, sg_n, sg_h,
                           sdo_b, sdo_n, sdo_h, sdz_b, sdz_n, sdz_h,
                           sdq_b, sdq_n, sdq_h, sdk_b, sdk_n, sdk_h, sdv_b, sdv_n, sdv_h, sdc_b, sdc_n, sdc_h,
                           K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, KS: tl.constexpr,
                           VB: tl.constexpr, T: tl.constexpr, PER_CHANNEL: tl.constexpr, REVERSE: tl.constexpr,
                           COLUMNS: tl.constexpr, ACCUMULATE: tl.constexpr, DOT_DTYPE: tl.constexpr,
                           PRECISION: tl.constexpr, EXACT_INPUTS: tl.constexpr):
    """dq, dk, dv (added to what is there with ACCUMULATE) and the log decays' gradient of one chunk. What leads to
    dq and dk multiplies float32-accurately (``mm_float32``; EXACT_INPUTS: q, k, v hold 16-bit values); q . k and
    dv, which the log decays' gradient does not read, multiply as the forward does (DOT_DTYPE, PRECISION)."""
    chunk, bh, b, h, pos, valid = chunk_program(N, NUM_HEADS, GRID_H, GRID_W, T, REVERSE, COLUMNS)
    q_base = q_ptr + b * sq_b + h * sq_h
    k_base = k_ptr + b * sk_b + h * sk_h
    v_base = v_ptr + b * sv_b + h * sv_h
    do_base = do_ptr + b * sdo_b + h * sdo_h
    g_base = g_ptr + b * sg_b + h * sg_h
    dz = tl.load(dz_ptr + b * sdz_b + pos * sdz_n + h * sdz_h, mask=valid, other=0.).to(tl.float32)[:, None]
    weights = tl.zeros((T, T), tl.float32) + dz
    for v_start in range(0, BV, VB):
        cols = v_start + tl.arange(0, VB)
        weights += mm_float32(load_rows(do_base, pos, sdo_n, cols, V, valid),
                              tl.trans(load_rows(v_base, pos, sv_n, cols, V, valid)), False, EXACT_INPUTS)
    cum, total = log_decays(g_base, pos, sg_n, tl.arange(0, KS), K, valid, T, False)  # per channel: per slice
    decays = decay_matrix(cum, T)
    grad_attn = weights * decays
    dcum = tl.zeros((T,), tl.float32)
    after = tl.zeros((1,), tl.float32)
    offset = (bh.to(tl.int64) * NUM_CHUNKS + chunk) * (BK * BV + 2 * BK)
    has_next = chunk + 1 < NUM_CHUNKS
    attn = tl.zeros((T, T), tl.float32)
    for start in tl.static_range(0, BK, KS):
        keys = start + tl.arange(0, KS)
        q, k, cum, total, channel, term = key_slice(q_base, k_base, g_base, pos, sq_n, sk_n, sg_n, keys, K, valid,
                                                    cum, total, T, PER_CHANNEL, DOT_DTYPE, PRECISION)
        attn += term
        if PER_CHANNEL:
            dq = tl.sum(weights[:, :, None] * k[None, :, :] * channel, axis=1)
            dk = tl.sum(weights[:, :, None] * q[:, None, :] * channel, axis=0)
        else:
            dq = mm_float32(grad_attn, k, False, EXACT_INPUTS)
            dk = mm_float32(tl.trans(grad_attn), q, False, EXACT_INPUTS)
        from_state = dz * load_state_vector(state_ptr + offset, keys, K, BK, BV)
        from_grad_state = tl.zeros((T, KS), tl.float32) + load_state_vector(grad_state_ptr + offset, keys, K, BK, BV)
        for v_start in range(0, BV, VB):
            cols = v_start + tl.arange(0, VB)
            from_state += mm_float32(load_rows(do_base, pos, sdo_n, cols, V, valid),
                                     tl.trans(load_state_matrix(state_ptr + offset, keys, K, cols, V, BV)), False,
                                     False)
            from_grad_state += mm_float32(load_rows(v_base, pos, sv_n, cols, V, valid),
                                          tl.trans(load_state_matrix(grad_state_ptr + offset, keys, K, cols, V, BV)),
                                          EXACT_INPUTS, False)
        dq += tl.exp(cum) * from_state
        dk += tl.exp(total - cum) * from_grad_state
        store_rows(dq_ptr + b * sdq_b + h * sdq_h, dq, pos, sdq_n, keys, K, valid, ACCUMULATE)
        store_rows(dk_ptr + b * sdk_b + h * sdk_h, dk, pos, sdk_n, keys, K, valid, ACCUMULATE)
        later = state_scaling_grad(state_ptr + offset, grad_state_ptr + offset, has_next, keys, K, V, BK, BV, VB)
        if PER_CHANNEL:
            store_rows(dcum_ptr + b * sdc_b + h * sdc_h, tl.cumsum(q * dq - k * dk, axis=0, reverse=True) + later,
                       pos, sdc_n, keys, K, valid, False)
        else:
            dcum += tl.sum(q * dq - k * dk, axis=1)
            after += tl.sum(later, axis=1)
    if not PER_CHANNEL:
        attn = attn * decays
        tl.store(dcum_ptr + b * sdc_b + pos * sdc_n + h * sdc_h, tl.cumsum(dcum, axis=0, reverse=True) + after,
                 mask=valid)
    for v_start in range(0, BV, VB):
        cols = v_start + tl.arange(0, VB)
        dv = mm(tl.trans(attn), load_rows(do_base, pos, sdo_n, cols, V, valid), DOT_DTYPE, PRECISION)
        for start in tl.static_range(0, BK, KS):
            keys = start + tl.arange(0, KS)
            k_to_end = load_rows(k_base, pos, sk_n, keys, K, valid)
            if PER_CHANNEL:
                slice_cum, slice_total = log_decays(g_base, pos, sg_n, keys, K, valid, T, True)
                k_to_end *= tl.exp(slice_total - slice_cum)
            else:
                k_to_end *= tl.exp(total - cum)
            dv += mm(k_to_end, load_state_matrix(grad_state_ptr + offset, keys, K, cols, V, BV), DOT_DTYPE,
                     PRECISION)
        store_rows(dv_ptr + b * sdv_b + h * sdv_h, dv, pos, sdv_n, cols, V, valid, ACCUMULATE)
