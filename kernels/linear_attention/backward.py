"""Backward kernels, both chunked over tokens per (batch, channel group) so that their reductions stay partial.

Pass 1 reads q and dO and writes dq plus chunk partials of dkv = sum_n z_n rope(phi(q_n))^T dO_n and of
d mean(phi(k)); the pair-swapping sum of pass 1 of the forward turns them into ``grads``. Pass 2 reads k,
v and the nine transposed LePE taps of dO and writes dk and dv; the same taps times v give the partials of
the LePE weight and bias gradients, which the last program of each channel group sums.

The transpose of ``rope(x) = x * cos - partner(x * ssin)`` is ``g * cos - partner(g) * ssin``, and
``partner(a @ M^T) = a @ swap(M)^T``: both products come from the plain and the row-swapped matrix. Pass 1
runs each pair as one paired product (common.py); pass 2 keeps two products: at its 32-token tiles the
paired form pulled the nine LePE taps into the tensor-core layout (a conversion per tap, seen in the
compiled sm_90 code) and spilled more.
"""
import functools

import torch
import triton
import triton.language as tl

from ..dependent_launch import follow_previous_grid
from ..grid_taps import TapGradients, finish_tap_sums, store_tap_sums, zero_tap_sums
from ..launcher import Launch
from ..partial_sums import chunking
from .common import (EPS, deinterleave, group_lanes, head_sum, interleave, lepe_grad_tap, load_pair, load_stats,
                     paired_columns, paired_rows, phi, phi_grad, rope_tile, store_paired)
from .launch import FinishPairs, Layout
from .rope import rope_tables


@triton.jit
def _grad_q_kernel(qk_ptr, do_ptr, cos_ptr, sin_ptr, stats_ptr, dqk_ptr, part_ptr,
                   N, H, W, TOKENS_PER_CHUNK, NUM_GROUPS,
                   s_qk_b, s_qk_n, s_do_b, s_do_n, s_dqk_b, s_dqk_n,
                   C: tl.constexpr, D: tl.constexpr, G: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, DOT_DTYPE: tl.constexpr,
                   PRECISION: tl.constexpr, SUM_PRECISION: tl.constexpr, PDL: tl.constexpr):
    follow_previous_grid(PDL)
    chunk = tl.program_id(0)
    bg = tl.program_id(1)
    b = bg // NUM_GROUPS
    lane, channel, valid, first, last = group_lanes(bg % NUM_GROUPS, C, D, G, BLOCK_C)
    stats, kmean, ones = load_stats(stats_ptr, bg, lane, valid, D, BLOCK_C)
    kv_rows = paired_rows(stats, lane, valid, BLOCK_C).to(DOT_DTYPE)
    kv_columns = paired_columns(stats, lane, valid, BLOCK_C).to(DOT_DTYPE)
    local = tl.arange(0, BLOCK_N)
    rel_q = local[:, None] * s_qk_n + channel[None, :]
    rel_do = local[:, None] * s_do_n + channel[None, :]
    rel_dq = local[:, None] * s_dqk_n + channel[None, :]
    q_batch = qk_ptr + b.to(tl.int64) * s_qk_b
    do_batch = do_ptr + b.to(tl.int64) * s_do_b
    dq_batch = dqk_ptr + b.to(tl.int64) * s_dqk_b
    dkv = tl.zeros((2 * BLOCK_C, BLOCK_C), tl.float32)
    dkmean = tl.zeros((BLOCK_C,), tl.float32)
    start = chunk * TOKENS_PER_CHUNK
    end = tl.minimum(start + TOKENS_PER_CHUNK, N)
    tok = start.to(tl.int64)
    for off in range(start, end, BLOCK_N):
        n = off + local
        mask = (n < end)[:, None] & valid[None, :]
        q32 = tl.load(q_batch + tok * s_qk_n + rel_q, mask=mask, other=float('-inf')).to(tl.float32)
        q = phi(q32)
        do = tl.load(do_batch + tok * s_do_n + rel_do, mask=mask, other=0.)
        cos, sin = rope_tile(cos_ptr, sin_ptr, n, W, H, C, channel, mask, first, last)
        z = 1.0 / (head_sum(q * kmean[None, :], ones, G, SUM_PRECISION) + EPS)
        attn = tl.dot(interleave(q * cos, q * sin).to(DOT_DTYPE), kv_rows, input_precision=PRECISION)
        g = -z * z * head_sum(do.to(tl.float32) * attn, ones, G, SUM_PRECISION)
        do = do.to(DOT_DTYPE)
        d_rot, d_partner = deinterleave(tl.dot(do, kv_columns, input_precision=PRECISION))
        dq = (d_rot * cos - d_partner * sin) * z + g * kmean[None, :]
        tl.store(dq_batch + tok * s_dqk_n + rel_dq, (dq * phi_grad(q32)).to(dqk_ptr.dtype.element_ty),
                 mask=mask)
        qz = q * z
        dkv += tl.dot(tl.trans(interleave(qz * cos, qz * sin).to(DOT_DTYPE)), do, input_precision=PRECISION)
        dkmean += tl.sum(g * q, axis=0)
        tok += BLOCK_N
    base = part_ptr + (chunk * tl.num_programs(1) + bg).to(tl.int64) * (2 * BLOCK_C * BLOCK_C + BLOCK_C)
    store_paired(base, dkv, dkmean, BLOCK_C)


@triton.jit
def _grad_kv_kernel(qk_ptr, v_ptr, do_ptr, cos_ptr, sin_ptr, grads_ptr, lepe_w_ptr, dqk_ptr, dv_ptr,
                    lepe_part_ptr,
                    N, H, W, TOKENS_PER_CHUNK, NUM_GROUPS,
                    s_qk_b, s_qk_n, s_v_b, s_v_n, s_do_b, s_do_n, s_dqk_b, s_dqk_n, s_dv_b, s_dv_n,
                    d_weight_ptr, d_bias_ptr, counter_ptr, TAP_ROWS, TAP_BLOCKS, TAP_C, TAP_WIDTH,
                    C: tl.constexpr, D: tl.constexpr, G: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, DOT_DTYPE: tl.constexpr,
                    PRECISION: tl.constexpr, PDL: tl.constexpr, TAP_BLOCK_R: tl.constexpr):
    follow_previous_grid(PDL)
    chunk = tl.program_id(0)
    bg = tl.program_id(1)
    b = bg // NUM_GROUPS
    lane, channel, valid, first, last = group_lanes(bg % NUM_GROUPS, C, D, G, BLOCK_C)
    inv_n = 1.0 / N
    grads = grads_ptr + bg.to(tl.int64) * (BLOCK_C * BLOCK_C + BLOCK_C)
    dkv, dkv_swapped = load_pair(grads, lane, valid, BLOCK_C)
    dkv = (dkv * inv_n).to(DOT_DTYPE)
    dkv_swapped = (dkv_swapped * inv_n).to(DOT_DTYPE)
    dkmean = tl.load(grads + BLOCK_C * BLOCK_C + lane, mask=valid, other=0.) * inv_n
    local = tl.arange(0, BLOCK_N)
    rel_k = local[:, None] * s_qk_n + channel[None, :]
    rel_v = local[:, None] * s_v_n + channel[None, :]
    rel_do = local[:, None] * s_do_n + channel[None, :]
    rel_dk = local[:, None] * s_dqk_n + channel[None, :]
    rel_dv = local[:, None] * s_dv_n + channel[None, :]
    k_batch = qk_ptr + b.to(tl.int64) * s_qk_b + C
    dk_batch = dqk_ptr + b.to(tl.int64) * s_dqk_b + C
    v_batch = v_ptr + b.to(tl.int64) * s_v_b
    do_batch = do_ptr + b.to(tl.int64) * s_do_b
    dv_batch = dv_ptr + b.to(tl.int64) * s_dv_b
    g0, g1, g2, g3, g4, g5, g6, g7, g8, g_bias = zero_tap_sums(BLOCK_N, BLOCK_C)
    start = chunk * TOKENS_PER_CHUNK
    end = tl.minimum(start + TOKENS_PER_CHUNK, N)
    tok = start.to(tl.int64)
    for off in range(start, end, BLOCK_N):
        n = off + local
        mask = (n < end)[:, None] & valid[None, :]
        k32 = tl.load(k_batch + tok * s_qk_n + rel_k, mask=mask, other=float('-inf')).to(tl.float32)
        k = phi(k32)
        v = tl.load(v_batch + tok * s_v_n + rel_v, mask=mask, other=0.)
        cos, sin = rope_tile(cos_ptr, sin_ptr, n, W, H, C, channel, mask, first, last)
        v_dot = v.to(DOT_DTYPE)
        d_rot = tl.dot(v_dot, tl.trans(dkv), input_precision=PRECISION)
        d_partner = tl.dot(v_dot, tl.trans(dkv_swapped), input_precision=PRECISION)
        dk = d_rot * cos - d_partner * sin + dkmean[None, :]
        tl.store(dk_batch + tok * s_dqk_n + rel_dk, (dk * phi_grad(k32)).to(dqk_ptr.dtype.element_ty), mask=mask)
        dv_attn = (tl.dot((k * cos).to(DOT_DTYPE), dkv, input_precision=PRECISION)
                   - tl.dot((k * sin).to(DOT_DTYPE), dkv_swapped, input_precision=PRECISION))
        # The LePE transpose accumulates in the layout of the loads (the attention term joins it once, at the
        # end); each tap's weight gradient sums v * dO(tap) elementwise here and over the tokens after the loop.
        # The centre tap (4) is dO itself, loaded once for its term and the bias gradient.
        v = v.to(tl.float32)
        row = n // W
        col = n % W
        do_tile = do_batch + tok * s_do_n
        dv = tl.zeros((BLOCK_N, BLOCK_C), tl.float32)
        dv, g0 = lepe_grad_tap(do_tile, rel_do, row, col, W, H, 0, s_do_n, mask, lepe_w_ptr, channel, valid, v, dv, g0)
        dv, g1 = lepe_grad_tap(do_tile, rel_do, row, col, W, H, 1, s_do_n, mask, lepe_w_ptr, channel, valid, v, dv, g1)
        dv, g2 = lepe_grad_tap(do_tile, rel_do, row, col, W, H, 2, s_do_n, mask, lepe_w_ptr, channel, valid, v, dv, g2)
        dv, g3 = lepe_grad_tap(do_tile, rel_do, row, col, W, H, 3, s_do_n, mask, lepe_w_ptr, channel, valid, v, dv, g3)
        do = tl.load(do_tile + rel_do, mask=mask, other=0.).to(tl.float32)
        dv += tl.load(lepe_w_ptr + channel * 9 + 4, mask=valid, other=0.).to(tl.float32)[None, :] * do
        g4 += v * do
        g_bias += do
        dv, g5 = lepe_grad_tap(do_tile, rel_do, row, col, W, H, 5, s_do_n, mask, lepe_w_ptr, channel, valid, v, dv, g5)
        dv, g6 = lepe_grad_tap(do_tile, rel_do, row, col, W, H, 6, s_do_n, mask, lepe_w_ptr, channel, valid, v, dv, g6)
        dv, g7 = lepe_grad_tap(do_tile, rel_do, row, col, W, H, 7, s_do_n, mask, lepe_w_ptr, channel, valid, v, dv, g7)
        dv, g8 = lepe_grad_tap(do_tile, rel_do, row, col, W, H, 8, s_do_n, mask, lepe_w_ptr, channel, valid, v, dv, g8)
        dv += dv_attn
        tl.store(dv_batch + tok * s_dv_n + rel_dv, dv.to(dv_ptr.dtype.element_ty), mask=mask)
        tok += BLOCK_N
    part = lepe_part_ptr + (chunk * tl.num_programs(1) + bg).to(tl.int64) * 10 * BLOCK_C + lane
    store_tap_sums(part, BLOCK_C, g0, g1, g2, g3, g4, g5, g6, g7, g8, g_bias)
    finish_tap_sums(lepe_part_ptr, d_weight_ptr, d_bias_ptr, counter_ptr, bg % NUM_GROUPS, TAP_ROWS, TAP_BLOCKS,
                    TAP_C, TAP_WIDTH, BLOCK_C, TAP_BLOCK_R)


class BackwardPlan:
    """The backward's launches for one input layout, and the RoPE tables they read (as ForwardPlan's)."""

    def __init__(self, grad_out, qk, v, lepe_weight, stats, height, width, num_heads):
        b, n, c = v.shape
        lay = Layout(c, num_heads, qk, v, grad_out)
        self.table_key = (height, width, c, v.device, lay.table_dtype)
        rows = b * lay.num_groups
        num_chunks, tokens_per_chunk = chunking(n, rows, qk.device, lay.backward_programs_per_sm,
                                                lay.block_n('grad_q', 'grad_kv'))
        self.part_shape = (num_chunks, rows, 2 * lay.block_c ** 2 + lay.block_c)
        self.lepe_part_shape = (num_chunks, rows, 10, lay.block_c)
        args = (n, height, width, tokens_per_chunk, lay.num_groups)
        # strides are part of the plan's key (kernel_op.layout); dqk and dv are new and contiguous
        qk_strides, v_strides, dy_strides = qk.stride()[:2], v.stride()[:2], grad_out.stride()[:2]
        dqk_strides, dv_strides = (n * qk.shape[2], qk.shape[2]), (n * c, c)
        self.grad_q_args = (*args, *qk_strides, *dy_strides, *dqk_strides)
        self.grad_kv_args = (*args, *qk_strides, *v_strides, *dy_strides, *dqk_strides, *dv_strides)
        self.grad_q = Launch(_grad_q_kernel, (num_chunks, rows), SUM_PRECISION=lay.sum_precision,
                             **lay.meta('grad_q'))
        self.finish = FinishPairs(num_chunks, rows, 1.0, lay)
        self.taps = TapGradients(num_chunks, b, lay.num_groups, lay.group_channels, c, qk.device)
        self.grad_kv = Launch(_grad_kv_kernel, (num_chunks, rows), **lay.meta('grad_kv'), **self.taps.meta)

    @functools.cached_property
    def tables(self):
        return rope_tables(*self.table_key)


def linear_attention_backward(plan: BackwardPlan, grad_out, qk, v, lepe_weight, stats, tables=None):
    """Triton backward; returns (d qk, d v, d lepe_weight, d lepe_bias). ``tables`` as the forward's."""
    cos, sin = plan.tables if tables is None else tables
    dqk = torch.empty(qk.shape, dtype=qk.dtype, device=qk.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    part = torch.empty(plan.part_shape, dtype=torch.float32, device=qk.device)
    plan.grad_q(qk, grad_out, cos, sin, stats, dqk, part, *plan.grad_q_args)
    grads = plan.finish(part)
    lepe_part = torch.empty(plan.lepe_part_shape, dtype=torch.float32, device=qk.device)
    d_weight, d_bias = plan.taps.outputs(lepe_weight)
    plan.grad_kv(qk, v, grad_out, cos, sin, grads, lepe_weight, dqk, dv, lepe_part, *plan.grad_kv_args, d_weight,
                 d_bias, *plan.taps.args())
    return dqk, dv, d_weight, d_bias
