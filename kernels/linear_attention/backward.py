"""Backward kernels, both chunked over tokens per (batch, head) so that their reductions stay partial.

Pass 1 reads q and dO and writes dq plus partials of dkv = sum_n z_n R(phi(q_n))^T dO_n and of
d mean(phi(k)); one small kernel sums them. Pass 2 reads k, v and the nine transposed LePE taps of dO and
writes dk and dv; the same taps times v give the partials of the LePE weight and bias gradients.

The transpose of ``rope(x) = x * cos + partner(x) * sin`` is ``g * cos + partner(g * sin)``.
"""
import torch
import triton
import triton.language as tl

from .common import EPS, lepe_tap, pair_swap_matrix, phi, phi_grad, rope_tile, swap_pairs
from .launch import chunking, launch_config, precision, sum_chunks


@triton.jit
def _grad_q_kernel(qk_ptr, do_ptr, cos_ptr, sin_ptr, stats_ptr, dqk_ptr, part_ptr,
                   N, H, W, C, NUM_HEADS, D, TOKENS_PER_CHUNK, BH,
                   s_qk_b, s_qk_n, s_do_b, s_do_n, s_dqk_b, s_dqk_n,
                   BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr):
    chunk = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // NUM_HEADS
    head = bh % NUM_HEADS
    d = tl.arange(0, BLOCK_D)
    d_mask = d < D
    dd_mask = d_mask[:, None] & d_mask[None, :]
    channel = head * D + d
    stats = stats_ptr + bh.to(tl.int64) * (D * D + D)
    kv = tl.load(stats + d[:, None] * D + d[None, :], mask=dd_mask, other=0.)
    kmean = tl.load(stats + D * D + d, mask=d_mask, other=0.)
    swap = pair_swap_matrix(BLOCK_D)
    q_base = qk_ptr + b.to(tl.int64) * s_qk_b + head * D
    do_base = do_ptr + b.to(tl.int64) * s_do_b + head * D
    dq_base = dqk_ptr + b.to(tl.int64) * s_dqk_b + head * D
    dkv = tl.zeros((BLOCK_D, BLOCK_D), tl.float32)
    dkmean = tl.zeros((BLOCK_D,), tl.float32)
    start = chunk * TOKENS_PER_CHUNK
    end = tl.minimum(start + TOKENS_PER_CHUNK, N)
    for off in range(start, end, BLOCK_N):
        n = off + tl.arange(0, BLOCK_N)
        n_mask = n < end
        mask = n_mask[:, None] & d_mask[None, :]
        rows = n.to(tl.int64)[:, None]
        q32 = tl.load(q_base + rows * s_qk_n + d[None, :], mask=mask, other=0.).to(tl.float32)
        q = tl.where(mask, phi(q32), 0.)
        q_partner = tl.where(mask, phi(swap_pairs(q32, swap, PRECISION)), 0.)
        do = tl.load(do_base + rows * s_do_n + d[None, :], mask=mask, other=0.).to(tl.float32)
        z = 1.0 / (tl.sum(q * kmean[None, :], axis=1) + EPS)
        cos, sin = rope_tile(cos_ptr, sin_ptr, n, H, W, C, channel, mask)
        q_rot = q * cos + q_partner * sin
        g = -z * z * tl.sum(do * tl.dot(q_rot, kv, input_precision=PRECISION), axis=1)
        dq_rot = tl.dot(do, tl.trans(kv), input_precision=PRECISION) * z[:, None]
        dq = dq_rot * cos + swap_pairs(dq_rot * sin, swap, PRECISION) + g[:, None] * kmean[None, :]
        tl.store(dq_base + rows * s_dqk_n + d[None, :], (dq * phi_grad(q32)).to(dqk_ptr.dtype.element_ty),
                 mask=mask)
        dkv += tl.dot(tl.trans(q_rot * z[:, None]), do, input_precision=PRECISION)
        dkmean += tl.sum(g[:, None] * q, axis=0)
    base = part_ptr + (chunk * BH + bh).to(tl.int64) * (D * D + D)
    tl.store(base + d[:, None] * D + d[None, :], dkv, mask=dd_mask)
    tl.store(base + D * D + d, dkmean, mask=d_mask)


@triton.jit
def _grad_kv_kernel(qk_ptr, v_ptr, do_ptr, cos_ptr, sin_ptr, grads_ptr, lepe_w_ptr, dqk_ptr, dv_ptr,
                    lepe_part_ptr,
                    N, H, W, C, NUM_HEADS, D, TOKENS_PER_CHUNK, BH,
                    s_qk_b, s_qk_n, s_v_b, s_v_n, s_do_b, s_do_n, s_dqk_b, s_dqk_n, s_dv_b, s_dv_n,
                    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr):
    chunk = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // NUM_HEADS
    head = bh % NUM_HEADS
    d = tl.arange(0, BLOCK_D)
    d_mask = d < D
    channel = head * D + d
    inv_n = 1.0 / N
    grads = grads_ptr + bh.to(tl.int64) * (D * D + D)
    dkv = tl.load(grads + d[:, None] * D + d[None, :], mask=d_mask[:, None] & d_mask[None, :], other=0.)
    dkmean = tl.load(grads + D * D + d, mask=d_mask, other=0.) * inv_n
    swap = pair_swap_matrix(BLOCK_D)
    k_base = qk_ptr + b.to(tl.int64) * s_qk_b + C + head * D
    dk_base = dqk_ptr + b.to(tl.int64) * s_dqk_b + C + head * D
    v_base = v_ptr + b.to(tl.int64) * s_v_b + head * D
    do_base = do_ptr + b.to(tl.int64) * s_do_b + head * D
    dv_base = dv_ptr + b.to(tl.int64) * s_dv_b + head * D
    taps = tl.arange(0, 16)
    dlepe = tl.zeros((16, BLOCK_D), tl.float32)
    start = chunk * TOKENS_PER_CHUNK
    end = tl.minimum(start + TOKENS_PER_CHUNK, N)
    for off in range(start, end, BLOCK_N):
        n = off + tl.arange(0, BLOCK_N)
        n_mask = n < end
        mask = n_mask[:, None] & d_mask[None, :]
        rows = n.to(tl.int64)[:, None]
        k32 = tl.load(k_base + rows * s_qk_n + d[None, :], mask=mask, other=0.).to(tl.float32)
        k = tl.where(mask, phi(k32), 0.)
        k_partner = tl.where(mask, phi(swap_pairs(k32, swap, PRECISION)), 0.)
        v = tl.load(v_base + rows * s_v_n + d[None, :], mask=mask, other=0.).to(tl.float32)
        cos, sin = rope_tile(cos_ptr, sin_ptr, n, H, W, C, channel, mask)
        dk_rot = tl.dot(v, tl.trans(dkv), input_precision=PRECISION) * inv_n
        dk = dk_rot * cos + swap_pairs(dk_rot * sin, swap, PRECISION) + dkmean[None, :]
        tl.store(dk_base + rows * s_dqk_n + d[None, :], (dk * phi_grad(k32)).to(dqk_ptr.dtype.element_ty),
                 mask=mask)
        dv = tl.dot(k * cos + k_partner * sin, dkv, input_precision=PRECISION) * inv_n
        for tap in tl.static_range(9):
            do_tap = lepe_tap(do_base, n, W, H, tap, s_do_n, d, d_mask, n_mask, -1)
            weight = tl.load(lepe_w_ptr + channel * 9 + tap, mask=d_mask, other=0.).to(tl.float32)
            dv += weight[None, :] * do_tap
            dlepe += tl.where(taps[:, None] == tap, tl.sum(v * do_tap, axis=0)[None, :], 0.)
            if tap == 4:
                dlepe += tl.where(taps[:, None] == 9, tl.sum(do_tap, axis=0)[None, :], 0.)
        tl.store(dv_base + rows * s_dv_n + d[None, :], dv.to(dv_ptr.dtype.element_ty), mask=mask)
    tl.store(lepe_part_ptr + (chunk * BH + bh).to(tl.int64) * 10 * D + taps[:, None] * D + d[None, :], dlepe,
             mask=(taps < 10)[:, None] & d_mask[None, :])


def linear_attention_backward(grad_out, qk, v, rope_cos, rope_sin, hw_shape, num_heads, lepe_weight, stats):
    """Triton backward; returns (d qk, d v, d lepe_weight, d lepe_bias)."""
    b, n, c = v.shape
    h, w = hw_shape
    d = c // num_heads
    bh = b * num_heads
    meta = launch_config(d)
    prec = precision(qk, v, grad_out)
    num_chunks, tokens_per_chunk = chunking(n, bh, qk.device)
    dqk = torch.empty(qk.shape, dtype=qk.dtype, device=qk.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    part = torch.empty((num_chunks, bh, d * d + d), dtype=torch.float32, device=qk.device)
    _grad_q_kernel[(num_chunks, bh)](
        qk, grad_out, rope_cos, rope_sin, stats, dqk, part, n, h, w, c, num_heads, d, tokens_per_chunk, bh,
        qk.stride(0), qk.stride(1), grad_out.stride(0), grad_out.stride(1), dqk.stride(0), dqk.stride(1),
        PRECISION=prec, **meta)
    grads = sum_chunks(part, 1.0)
    lepe_part = torch.empty((num_chunks, bh, 10, d), dtype=torch.float32, device=qk.device)
    _grad_kv_kernel[(num_chunks, bh)](
        qk, v, grad_out, rope_cos, rope_sin, grads, lepe_weight, dqk, dv, lepe_part,
        n, h, w, c, num_heads, d, tokens_per_chunk, bh,
        qk.stride(0), qk.stride(1), v.stride(0), v.stride(1), grad_out.stride(0), grad_out.stride(1),
        dqk.stride(0), dqk.stride(1), dv.stride(0), dv.stride(1), PRECISION=prec, **meta)
    # (chunks, B*heads, 10, D) -> per channel (heads*D): 9 weight taps and the bias, summed over chunks, batch.
    lepe = sum_chunks(lepe_part.view(num_chunks * b, num_heads, 10 * d), 1.0).view(num_heads, 10, d)
    d_weight = lepe[:, :9].permute(0, 2, 1).reshape(c, 1, 3, 3)
    d_bias = lepe[:, 9].reshape(c)
    return dqk, dv, d_weight.to(lepe_weight.dtype), d_bias.to(lepe_weight.dtype)
