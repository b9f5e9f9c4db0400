"""Forward kernels: (1) per-chunk partials of kv and sum(phi(k)); (2) per-token output with fused LePE.

Pass 1 reads k and v once; the chunk partials are summed by one small kernel (deterministic, no atomics).
Pass 2 reads q and v (v nine times, the 3x3 LePE taps, mostly from cache) and writes the output once.
``stats`` holds, per batch and head, kv (D x D) and mean(phi(k)) (D) in float32: D*D + D values.
"""
import torch
import triton
import triton.language as tl

from .common import EPS, lepe_tap, pair_swap_matrix, phi, rope_tile, swap_pairs
from .launch import chunking, launch_config, precision, sum_chunks


@triton.jit
def _reduce_kv_kernel(qk_ptr, v_ptr, cos_ptr, sin_ptr, part_ptr,
                      N, H, W, C, NUM_HEADS, D, TOKENS_PER_CHUNK, BH,
                      s_qk_b, s_qk_n, s_v_b, s_v_n,
                      BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr):
    chunk = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // NUM_HEADS
    head = bh % NUM_HEADS
    d = tl.arange(0, BLOCK_D)
    d_mask = d < D
    channel = head * D + d
    k_base = qk_ptr + b.to(tl.int64) * s_qk_b + C + head * D
    v_base = v_ptr + b.to(tl.int64) * s_v_b + head * D
    swap = pair_swap_matrix(BLOCK_D)
    kv = tl.zeros((BLOCK_D, BLOCK_D), tl.float32)
    ksum = tl.zeros((BLOCK_D,), tl.float32)
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
        kv += tl.dot(tl.trans(k * cos + k_partner * sin), v, input_precision=PRECISION)
        ksum += tl.sum(k, axis=0)
    base = part_ptr + (chunk * BH + bh).to(tl.int64) * (D * D + D)
    tl.store(base + d[:, None] * D + d[None, :], kv, mask=d_mask[:, None] & d_mask[None, :])
    tl.store(base + D * D + d, ksum, mask=d_mask)


@triton.jit
def _output_kernel(qk_ptr, v_ptr, cos_ptr, sin_ptr, stats_ptr, lepe_w_ptr, lepe_b_ptr, out_ptr,
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
    channel = head * D + d
    mask = n_mask[:, None] & d_mask[None, :]
    rows = n.to(tl.int64)[:, None]
    stats = stats_ptr + bh.to(tl.int64) * (D * D + D)
    kv = tl.load(stats + d[:, None] * D + d[None, :], mask=d_mask[:, None] & d_mask[None, :], other=0.)
    kmean = tl.load(stats + D * D + d, mask=d_mask, other=0.)
    swap = pair_swap_matrix(BLOCK_D)
    q32 = tl.load(qk_ptr + b.to(tl.int64) * s_qk_b + head * D + rows * s_qk_n + d[None, :], mask=mask,
                  other=0.).to(tl.float32)
    q = tl.where(mask, phi(q32), 0.)
    q_partner = tl.where(mask, phi(swap_pairs(q32, swap, PRECISION)), 0.)
    z = 1.0 / (tl.sum(q * kmean[None, :], axis=1) + EPS)
    cos, sin = rope_tile(cos_ptr, sin_ptr, n, H, W, C, channel, mask)
    out = tl.dot(q * cos + q_partner * sin, kv, input_precision=PRECISION) * z[:, None]
    out += tl.load(lepe_b_ptr + channel, mask=d_mask, other=0.).to(tl.float32)[None, :]
    v_base = v_ptr + b.to(tl.int64) * s_v_b + head * D
    for tap in tl.static_range(9):
        weight = tl.load(lepe_w_ptr + channel * 9 + tap, mask=d_mask, other=0.).to(tl.float32)
        out += weight[None, :] * lepe_tap(v_base, n, W, H, tap, s_v_n, d, d_mask, n_mask, 1)
    tl.store(out_ptr + b.to(tl.int64) * s_o_b + head * D + rows * s_o_n + d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=mask)


def linear_attention_forward(qk, v, rope_cos, rope_sin, hw_shape, num_heads, lepe_weight, lepe_bias):
    """Triton forward. Returns (out (B, N, C) in qk's dtype, stats (B*heads, D*D + D) float32)."""
    b, n, c = v.shape
    h, w = hw_shape
    d = c // num_heads
    bh = b * num_heads
    meta = launch_config(d)
    num_chunks, tokens_per_chunk = chunking(n, bh, qk.device)
    part = torch.empty((num_chunks, bh, d * d + d), dtype=torch.float32, device=qk.device)
    prec = precision(qk, v)
    _reduce_kv_kernel[(num_chunks, bh)](
        qk, v, rope_cos, rope_sin, part, n, h, w, c, num_heads, d, tokens_per_chunk, bh,
        qk.stride(0), qk.stride(1), v.stride(0), v.stride(1), PRECISION=prec, **meta)
    stats = sum_chunks(part, 1.0 / n)
    out = torch.empty((b, n, c), dtype=qk.dtype, device=qk.device)
    _output_kernel[(triton.cdiv(n, meta['BLOCK_N']), bh)](
        qk, v, rope_cos, rope_sin, stats, lepe_weight, lepe_bias, out, n, h, w, c, num_heads, d,
        qk.stride(0), qk.stride(1), v.stride(0), v.stride(1), out.stride(0), out.stride(1),
        PRECISION=prec, **meta)
    return out, stats
