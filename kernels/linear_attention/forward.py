"""Forward kernels: (1) per-chunk partials of kv and sum(phi(k)); (2) per-token output with fused LePE.

Pass 1 reads k and v once; one small kernel sums the chunk partials (deterministic, no atomics) into
``stats``: per batch and channel group, kv (BLOCK_C x BLOCK_C, block diagonal: each head's D x D kv) and
mean(phi(k)) (BLOCK_C), float32. Pass 2 reads q and v (v nine times, the 3x3 LePE taps, mostly from cache)
and writes the output once.
"""
import functools

import torch
import triton
import triton.language as tl

from ..dependent_launch import follow_previous_grid
from ..grid_taps import grid_tap
from ..launcher import Launch
from ..partial_sums import chunking
from .common import (EPS, group_lanes, head_sum, interleave, load_stats, paired_rows, phi, rope_tile,
                     store_paired)
from .launch import FinishPairs, Layout
from .rope import rope_tables


@triton.jit
def _reduce_kv_kernel(qk_ptr, v_ptr, cos_ptr, sin_ptr, part_ptr,
                      N, H, W, TOKENS_PER_CHUNK, NUM_GROUPS,
                      s_qk_b, s_qk_n, s_v_b, s_v_n,
                      C: tl.constexpr, D: tl.constexpr, G: tl.constexpr,
                      BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, DOT_DTYPE: tl.constexpr,
                      PRECISION: tl.constexpr, PDL: tl.constexpr):
    follow_previous_grid(PDL)
    chunk = tl.program_id(0)
    bg = tl.program_id(1)
    b = bg // NUM_GROUPS
    _, channel, valid, first, last = group_lanes(bg % NUM_GROUPS, C, D, G, BLOCK_C)
    local = tl.arange(0, BLOCK_N)
    rel_k = local[:, None] * s_qk_n + channel[None, :]
    rel_v = local[:, None] * s_v_n + channel[None, :]
    k_batch = qk_ptr + b.to(tl.int64) * s_qk_b + C
    v_batch = v_ptr + b.to(tl.int64) * s_v_b
    kv = tl.zeros((2 * BLOCK_C, BLOCK_C), tl.float32)
    ksum = tl.zeros((BLOCK_C,), tl.float32)
    start = chunk * TOKENS_PER_CHUNK
    end = tl.minimum(start + TOKENS_PER_CHUNK, N)
    tok = start.to(tl.int64)
    for off in range(start, end, BLOCK_N):
        n = off + local
        mask = (n < end)[:, None] & valid[None, :]
        k = phi(tl.load(k_batch + tok * s_qk_n + rel_k, mask=mask, other=float('-inf')).to(tl.float32))
        v = tl.load(v_batch + tok * s_v_n + rel_v, mask=mask, other=0.).to(DOT_DTYPE)
        cos, sin = rope_tile(cos_ptr, sin_ptr, n, W, H, C, channel, mask, first, last)
        kv += tl.dot(tl.trans(interleave(k * cos, k * sin).to(DOT_DTYPE)), v, input_precision=PRECISION)
        ksum += tl.sum(k, axis=0)
        tok += BLOCK_N
    base = part_ptr + (chunk * tl.num_programs(1) + bg).to(tl.int64) * (2 * BLOCK_C * BLOCK_C + BLOCK_C)
    store_paired(base, kv, ksum, BLOCK_C)


@triton.jit
def _output_kernel(qk_ptr, v_ptr, cos_ptr, sin_ptr, stats_ptr, lepe_w_ptr, lepe_b_ptr, out_ptr,
                   N, H, W, TOKENS_PER_PROGRAM, NUM_GROUPS,
                   s_qk_b, s_qk_n, s_v_b, s_v_n, s_o_b, s_o_n,
                   C: tl.constexpr, D: tl.constexpr, G: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, DOT_DTYPE: tl.constexpr,
                   PRECISION: tl.constexpr, SUM_PRECISION: tl.constexpr, LEPE_UNROLL: tl.constexpr,
                   PDL: tl.constexpr):
    follow_previous_grid(PDL)
    bg = tl.program_id(1)
    b = bg // NUM_GROUPS
    lane, channel, valid, first, last = group_lanes(bg % NUM_GROUPS, C, D, G, BLOCK_C)
    stats, kmean, ones = load_stats(stats_ptr, bg, lane, valid, D, BLOCK_C)
    kv_rows = paired_rows(stats, lane, valid, BLOCK_C).to(DOT_DTYPE)
    bias = tl.load(lepe_b_ptr + channel, mask=valid, other=0.).to(tl.float32)
    local = tl.arange(0, BLOCK_N)
    rel_q = local[:, None] * s_qk_n + channel[None, :]
    rel_v = local[:, None] * s_v_n + channel[None, :]
    rel_o = local[:, None] * s_o_n + channel[None, :]
    q_batch = qk_ptr + b.to(tl.int64) * s_qk_b
    v_batch = v_ptr + b.to(tl.int64) * s_v_b
    o_batch = out_ptr + b.to(tl.int64) * s_o_b
    start = tl.program_id(0) * TOKENS_PER_PROGRAM
    end = tl.minimum(start + TOKENS_PER_PROGRAM, N)
    tok = start.to(tl.int64)
    for off in range(start, end, BLOCK_N):
        n = off + local
        mask = (n < end)[:, None] & valid[None, :]
        q = phi(tl.load(q_batch + tok * s_qk_n + rel_q, mask=mask, other=float('-inf'))
                .to(tl.float32))
        cos, sin = rope_tile(cos_ptr, sin_ptr, n, W, H, C, channel, mask, first, last)
        attn = tl.dot(interleave(q * cos, q * sin).to(DOT_DTYPE), kv_rows, input_precision=PRECISION)
        attn = attn * (1.0 / (head_sum(q * kmean[None, :], ones, G, SUM_PRECISION) + EPS))
        # LePE accumulates in the layout of the loads; the attention term joins it once, at the end.
        row = n // W
        col = n % W
        v_tile = v_batch + tok * s_v_n
        out = tl.zeros((BLOCK_N, BLOCK_C), tl.float32) + bias[None, :]
        for tap in tl.range(9, loop_unroll_factor=LEPE_UNROLL):
            weight = tl.load(lepe_w_ptr + channel * 9 + tap, mask=valid, other=0.).to(tl.float32)
            out += weight[None, :] * grid_tap(v_tile, rel_v, row, col, W, H, tap, s_v_n, mask, 1)
        out += attn
        tl.store(o_batch + tok * s_o_n + rel_o, out.to(out_ptr.dtype.element_ty), mask=mask)
        tok += BLOCK_N


class ForwardPlan:
    """The forward's launches for one input layout, and the RoPE tables they read (from rope.py's cache, taken at
    first use: calls that bring their own tables never build them)."""

    def __init__(self, qk, v, lepe_weight, lepe_bias, height, width, num_heads):
        b, n, c = self.b, self.n, self.c = v.shape
        lay = Layout(c, num_heads, qk, v)
        self.table_key = (height, width, c, v.device, lay.table_dtype)
        rows = b * lay.num_groups
        num_chunks, tokens_per_chunk = chunking(n, rows, qk.device, lay.reduce_programs_per_sm,
                                                lay.block_n('reduce'))
        self.part_shape = (num_chunks, rows, 2 * lay.block_c ** 2 + lay.block_c)
        self.reduce = Launch(_reduce_kv_kernel, (num_chunks, rows), **lay.meta('reduce'))
        # strides are part of the plan's key (kernel_op.layout); the output is new and contiguous
        self.reduce_args = (n, height, width, tokens_per_chunk, lay.num_groups, *qk.stride()[:2], *v.stride()[:2])
        self.finish = FinishPairs(num_chunks, rows, 1.0 / n, lay)
        tokens_per_program = lay.block_n('output') * lay.output_tiles
        self.output = Launch(_output_kernel, (triton.cdiv(n, tokens_per_program), rows),
                             SUM_PRECISION=lay.sum_precision, LEPE_UNROLL=lay.lepe_unroll, **lay.meta('output'))
        self.output_args = (n, height, width, tokens_per_program, lay.num_groups, *qk.stride()[:2],
                            *v.stride()[:2], n * c, c)

    @functools.cached_property
    def tables(self):
        return rope_tables(*self.table_key)


def linear_attention_forward(plan: ForwardPlan, qk, v, lepe_weight, lepe_bias, tables=None):
    """Triton forward. Returns (out (B, N, C) in qk's dtype, stats (B * groups, BLOCK_C^2 + BLOCK_C) float32).
    ``tables``: the RoPE tables (cos, signed_sin) in the plan's table dtype, or None for the cached ones."""
    cos, sin = plan.tables if tables is None else tables
    part = torch.empty(plan.part_shape, dtype=torch.float32, device=qk.device)
    plan.reduce(qk, v, cos, sin, part, *plan.reduce_args)
    stats = plan.finish(part)
    out = torch.empty((plan.b, plan.n, plan.c), dtype=qk.dtype, device=qk.device)
    plan.output(qk, v, cos, sin, stats, lepe_weight, lepe_bias, out, *plan.output_args)
    return out, stats
