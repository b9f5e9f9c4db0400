"""Forward kernels: (1) per-chunk partial kv and sum(phi(k)); (2) per-token output with fused LePE.

Pass 1 reads k and v once; the chunk partials are summed by torch (deterministic, no atomics). Pass 2
reads q and v (v nine times, the 3x3 LePE taps, mostly from cache) and writes the output once.
"""
import torch
import triton
import triton.language as tl

from .common import EPS, lepe_tap, phi, rope_cos_sin, rotate
from .launch import chunking, precision

BLOCK_N = 64


@triton.jit
def _reduce_kv_kernel(qk_ptr, v_ptr, rows_ptr, cols_ptr, kv_part_ptr, ksum_part_ptr,
                      N, W, C, NUM_HEADS, D, TOKENS_PER_CHUNK, BH,
                      s_qk_b, s_qk_n, s_v_b, s_v_n,
                      BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr):
    chunk = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // NUM_HEADS
    head = bh % NUM_HEADS
    d = tl.arange(0, BLOCK_D)
    d_mask = d < D
    k_base = qk_ptr + b.to(tl.int64) * s_qk_b + C + head * D
    v_base = v_ptr + b.to(tl.int64) * s_v_b + head * D
    kv = tl.zeros((BLOCK_D, BLOCK_D), tl.float32)
    ksum = tl.zeros((BLOCK_D,), tl.float32)
    start = chunk * TOKENS_PER_CHUNK
    end = tl.minimum(start + TOKENS_PER_CHUNK, N)
    for off in range(start, end, BLOCK_N):
        n = off + tl.arange(0, BLOCK_N)
        n_mask = n < end
        mask = n_mask[:, None] & d_mask[None, :]
        rows = n.to(tl.int64)[:, None]
        k = tl.load(k_base + rows * s_qk_n + d[None, :], mask=mask, other=0.).to(tl.float32)
        v = tl.load(v_base + rows * s_v_n + d[None, :], mask=mask, other=0.).to(tl.float32)
        k = tl.where(mask, phi(k), 0.)
        cos, sin = rope_cos_sin(rows_ptr, cols_ptr, n, W, head, C, D, n_mask, BLOCK_D)
        k_rot = rotate(k, cos, sin, BLOCK_N, BLOCK_D)
        kv += tl.dot(tl.trans(k_rot), v, input_precision=PRECISION)
        ksum += tl.sum(k, axis=0)
    part = (chunk * BH + bh).to(tl.int64)
    tl.store(kv_part_ptr + part * D * D + d[:, None] * D + d[None, :], kv,
             mask=d_mask[:, None] & d_mask[None, :])
    tl.store(ksum_part_ptr + part * D + d, ksum, mask=d_mask)


@triton.jit
def _output_kernel(qk_ptr, v_ptr, rows_ptr, cols_ptr, kv_ptr, kmean_ptr, lepe_w_ptr, lepe_b_ptr, out_ptr,
                   N, H, W, C, NUM_HEADS, D,
                   s_qk_b, s_qk_n, s_v_b, s_v_n, s_o_b, s_o_n,
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
    q = tl.load(qk_ptr + b.to(tl.int64) * s_qk_b + head * D + rows * s_qk_n + d[None, :],
                mask=mask, other=0.).to(tl.float32)
    q = tl.where(mask, phi(q), 0.)
    kmean = tl.load(kmean_ptr + bh * D + d, mask=d_mask, other=0.)
    z = 1.0 / (tl.sum(q * kmean[None, :], axis=1) + EPS)
    cos, sin = rope_cos_sin(rows_ptr, cols_ptr, n, W, head, C, D, n_mask, BLOCK_D)
    q_rot = rotate(q, cos, sin, BLOCK_N, BLOCK_D)
    kv = tl.load(kv_ptr + bh * D * D + d[:, None] * D + d[None, :], mask=d_mask[:, None] & d_mask[None, :],
                 other=0.)
    out = tl.dot(q_rot, kv, input_precision=PRECISION) * z[:, None]
    channel = head * D + d
    out += tl.load(lepe_b_ptr + channel, mask=d_mask, other=0.).to(tl.float32)[None, :]
    v_base = v_ptr + b.to(tl.int64) * s_v_b + head * D
    for tap in tl.static_range(9):
        weight = tl.load(lepe_w_ptr + channel * 9 + tap, mask=d_mask, other=0.).to(tl.float32)
        out += weight[None, :] * lepe_tap(v_base, n, W, H, N, tap, s_v_n, d, d_mask, n_mask, 1)
    tl.store(out_ptr + b.to(tl.int64) * s_o_b + head * D + rows * s_o_n + d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=mask)


def linear_attention_forward(qk, v, rope_rows, rope_cols, num_heads, lepe_weight, lepe_bias):
    """Triton forward; returns (out (B, N, C) in qk's dtype, kv (B*heads, D, D) fp32, kmean (B*heads, D))."""
    b, n, c = v.shape
    h, w = rope_rows.shape[0], rope_cols.shape[0]
    d = c // num_heads
    bh = b * num_heads
    block_d = max(16, triton.next_power_of_2(d))
    num_chunks, tokens_per_chunk = chunking(n, bh, BLOCK_N, qk.device)
    kv_part = qk.new_empty((num_chunks, bh, d, d), dtype=torch.float32)
    ksum_part = qk.new_empty((num_chunks, bh, d), dtype=torch.float32)
    prec = precision(qk, v)
    _reduce_kv_kernel[(num_chunks, bh)](
        qk, v, rope_rows, rope_cols, kv_part, ksum_part, n, w, c, num_heads, d, tokens_per_chunk, bh,
        qk.stride(0), qk.stride(1), v.stride(0), v.stride(1),
        BLOCK_N=BLOCK_N, BLOCK_D=block_d, PRECISION=prec)
    kv = kv_part.sum(0) / n
    kmean = ksum_part.sum(0) / n
    out = torch.empty((b, n, c), dtype=qk.dtype, device=qk.device)
    _output_kernel[(triton.cdiv(n, BLOCK_N), bh)](
        qk, v, rope_rows, rope_cols, kv, kmean, lepe_weight, lepe_bias, out, n, h, w, c, num_heads, d,
        qk.stride(0), qk.stride(1), v.stride(0), v.stride(1), out.stride(0), out.stride(1),
        BLOCK_N=BLOCK_N, BLOCK_D=block_d, PRECISION=prec)
    return out, kv, kmean
