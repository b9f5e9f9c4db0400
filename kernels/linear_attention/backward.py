"""Backward kernels.

Pass 1 (chunked over tokens, per batch and head) reads q, dO and the LePE taps of v; it writes dq and the
per-chunk partials of dkv = sum_n z_n R(phi(q_n))^T dO_n, of d mean(phi(k)), and of the LePE weight/bias
gradients. Pass 2 (per token) reads k, v and the transposed LePE taps of dO and writes dk and dv.
"""
import torch
import triton
import triton.language as tl

from .common import EPS, lepe_tap, phi, phi_grad, rope_cos_sin, rotate
from .launch import chunking, precision

BLOCK_N = 64


@triton.jit
def _grad_q_kernel(qk_ptr, v_ptr, do_ptr, rows_ptr, cols_ptr, kv_ptr, kmean_ptr, dqk_ptr,
                   dkv_part_ptr, dkmean_part_ptr, dlw_part_ptr, dlb_part_ptr,
                   N, H, W, C, NUM_HEADS, D, TOKENS_PER_CHUNK, BH,
                   s_qk_b, s_qk_n, s_v_b, s_v_n, s_do_b, s_do_n, s_dqk_b, s_dqk_n,
                   BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr):
    chunk = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // NUM_HEADS
    head = bh % NUM_HEADS
    d = tl.arange(0, BLOCK_D)
    d_mask = d < D
    dd_mask = d_mask[:, None] & d_mask[None, :]
    kv = tl.load(kv_ptr + bh * D * D + d[:, None] * D + d[None, :], mask=dd_mask, other=0.)
    kmean = tl.load(kmean_ptr + bh * D + d, mask=d_mask, other=0.)
    q_base = qk_ptr + b.to(tl.int64) * s_qk_b + head * D
    v_base = v_ptr + b.to(tl.int64) * s_v_b + head * D
    do_base = do_ptr + b.to(tl.int64) * s_do_b + head * D
    dq_base = dqk_ptr + b.to(tl.int64) * s_dqk_b + head * D
    dkv = tl.zeros((BLOCK_D, BLOCK_D), tl.float32)
    dkmean = tl.zeros((BLOCK_D,), tl.float32)
    dlw = tl.zeros((16, BLOCK_D), tl.float32)
    dlb = tl.zeros((BLOCK_D,), tl.float32)
    taps = tl.arange(0, 16)
    start = chunk * TOKENS_PER_CHUNK
    end = tl.minimum(start + TOKENS_PER_CHUNK, N)
    for off in range(start, end, BLOCK_N):
        n = off + tl.arange(0, BLOCK_N)
        n_mask = n < end
        mask = n_mask[:, None] & d_mask[None, :]
        rows = n.to(tl.int64)[:, None]
        q_raw = tl.load(q_base + rows * s_qk_n + d[None, :], mask=mask, other=0.).to(tl.float32)
        do = tl.load(do_base + rows * s_do_n + d[None, :], mask=mask, other=0.).to(tl.float32)
        q = tl.where(mask, phi(q_raw), 0.)
        z = 1.0 / (tl.sum(q * kmean[None, :], axis=1) + EPS)
        cos, sin = rope_cos_sin(rows_ptr, cols_ptr, n, W, head, C, D, n_mask, BLOCK_D)
        q_rot = rotate(q, cos, sin, BLOCK_N, BLOCK_D)
        a = tl.dot(q_rot, kv, input_precision=PRECISION)
        g = -z * z * tl.sum(do * a, axis=1)
        dq_rot = tl.dot(do, tl.trans(kv), input_precision=PRECISION) * z[:, None]
        dq = rotate(dq_rot, cos, -sin, BLOCK_N, BLOCK_D) + g[:, None] * kmean[None, :]
        dq = dq * phi_grad(q_raw)
        tl.store(dq_base + rows * s_dqk_n + d[None, :], dq.to(dqk_ptr.dtype.element_ty), mask=mask)
        dkv += tl.dot(tl.trans(q_rot * z[:, None]), do, input_precision=PRECISION)
        dkmean += tl.sum(g[:, None] * q, axis=0)
        dlb += tl.sum(do, axis=0)
        for tap in tl.static_range(9):
            contrib = tl.sum(do * lepe_tap(v_base, n, W, H, N, tap, s_v_n, d, d_mask, n_mask, 1), axis=0)
            dlw += tl.where(taps[:, None] == tap, contrib[None, :], 0.)
    part = (chunk * BH + bh).to(tl.int64)
    tl.store(dkv_part_ptr + part * D * D + d[:, None] * D + d[None, :], dkv, mask=dd_mask)
    tl.store(dkmean_part_ptr + part * D + d, dkmean, mask=d_mask)
    tl.store(dlw_part_ptr + part * 9 * D + taps[:, None] * D + d[None, :], dlw,
             mask=(taps < 9)[:, None] & d_mask[None, :])
    tl.store(dlb_part_ptr + part * D + d, dlb, mask=d_mask)


@triton.jit
def _grad_kv_kernel(qk_ptr, v_ptr, do_ptr, rows_ptr, cols_ptr, dkv_ptr, dkmean_ptr, lepe_w_ptr,
                    dqk_ptr, dv_ptr,
                    N, H, W, C, NUM_HEADS, D,
                    s_qk_b, s_qk_n, s_v_b, s_v_n, s_do_b, s_do_n, s_dqk_b, s_dqk_n, s_dv_b, s_dv_n,
                    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr):
    bh = tl.program_id(1)
    b = bh // NUM_HEADS
    head = bh % NUM_HEADS
    n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = n < N
    d = tl.arange(0, BLOCK_D)
    d_mask = d < D
    mask = n_mask[:, None] & d_mask[None, :]
    rows = n.to(tl.int64)[:, None]
    inv_n = 1.0 / N
    k_raw = tl.load(qk_ptr + b.to(tl.int64) * s_qk_b + C + head * D + rows * s_qk_n + d[None, :],
                    mask=mask, other=0.).to(tl.float32)
    v = tl.load(v_ptr + b.to(tl.int64) * s_v_b + head * D + rows * s_v_n + d[None, :],
                mask=mask, other=0.).to(tl.float32)
    dkv = tl.load(dkv_ptr + bh * D * D + d[:, None] * D + d[None, :],
                  mask=d_mask[:, None] & d_mask[None, :], other=0.)
    dkmean = tl.load(dkmean_ptr + bh * D + d, mask=d_mask, other=0.)
    k = tl.where(mask, phi(k_raw), 0.)
    cos, sin = rope_cos_sin(rows_ptr, cols_ptr, n, W, head, C, D, n_mask, BLOCK_D)
    k_rot = rotate(k, cos, sin, BLOCK_N, BLOCK_D)
    dk_rot = tl.dot(v, tl.trans(dkv), input_precision=PRECISION) * inv_n
    dk = (rotate(dk_rot, cos, -sin, BLOCK_N, BLOCK_D) + dkmean[None, :] * inv_n) * phi_grad(k_raw)
    tl.store(dqk_ptr + b.to(tl.int64) * s_dqk_b + C + head * D + rows * s_dqk_n + d[None, :],
             dk.to(dqk_ptr.dtype.element_ty), mask=mask)
    dv = tl.dot(k_rot, dkv, input_precision=PRECISION) * inv_n
    do_base = do_ptr + b.to(tl.int64) * s_do_b + head * D
    channel = head * D + d
    for tap in tl.static_range(9):
        weight = tl.load(lepe_w_ptr + channel * 9 + tap, mask=d_mask, other=0.).to(tl.float32)
        dv += weight[None, :] * lepe_tap(do_base, n, W, H, N, tap, s_do_n, d, d_mask, n_mask, -1)
    tl.store(dv_ptr + b.to(tl.int64) * s_dv_b + head * D + rows * s_dv_n + d[None, :],
             dv.to(dv_ptr.dtype.element_ty), mask=mask)


def linear_attention_backward(grad_out, qk, v, rope_rows, rope_cols, num_heads, lepe_weight, kv, kmean):
    """Triton backward; returns (d qk, d v, d lepe_weight, d lepe_bias)."""
    b, n, c = v.shape
    h, w = rope_rows.shape[0], rope_cols.shape[0]
    d = c // num_heads
    bh = b * num_heads
    block_d = max(16, triton.next_power_of_2(d))
    prec = precision(qk, v, grad_out)
    num_chunks, tokens_per_chunk = chunking(n, bh, BLOCK_N, qk.device)
    f32 = dict(dtype=torch.float32, device=qk.device)
    dkv_part = torch.empty((num_chunks, bh, d, d), **f32)
    dkmean_part = torch.empty((num_chunks, bh, d), **f32)
    dlw_part = torch.empty((num_chunks, bh, 9, d), **f32)
    dlb_part = torch.empty((num_chunks, bh, d), **f32)
    dqk = torch.empty_like(qk, memory_format=torch.contiguous_format)
    dv = torch.empty_like(v, memory_format=torch.contiguous_format)
    _grad_q_kernel[(num_chunks, bh)](
        qk, v, grad_out, rope_rows, rope_cols, kv, kmean, dqk, dkv_part, dkmean_part, dlw_part, dlb_part,
        n, h, w, c, num_heads, d, tokens_per_chunk, bh,
        qk.stride(0), qk.stride(1), v.stride(0), v.stride(1), grad_out.stride(0), grad_out.stride(1),
        dqk.stride(0), dqk.stride(1),
        BLOCK_N=BLOCK_N, BLOCK_D=block_d, PRECISION=prec)
    dkv = dkv_part.sum(0)
    dkmean = dkmean_part.sum(0)
    _grad_kv_kernel[(triton.cdiv(n, BLOCK_N), bh)](
        qk, v, grad_out, rope_rows, rope_cols, dkv, dkmean, lepe_weight, dqk, dv,
        n, h, w, c, num_heads, d,
        qk.stride(0), qk.stride(1), v.stride(0), v.stride(1), grad_out.stride(0), grad_out.stride(1),
        dqk.stride(0), dqk.stride(1), dv.stride(0), dv.stride(1),
        BLOCK_N=BLOCK_N, BLOCK_D=block_d, PRECISION=prec)
    # (chunks, B*heads, 9, D) -> (heads*D, 9): summed over chunks and batch, channels ordered head-major.
    d_weight = dlw_part.sum(0).view(b, num_heads, 9, d).sum(0).permute(0, 2, 1).reshape(c, 1, 3, 3)
    d_bias = dlb_part.sum(0).view(b, c).sum(0)
    return dqk, dv, d_weight.to(lepe_weight.dtype), d_bias.to(lepe_weight.dtype)
