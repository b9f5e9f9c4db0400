"""Triton backward of the selective scan.

Walks the chunks from last to first. In each chunk it rebuilds the states h_t from the saved chunk-start state
(a forward associative scan), then runs the adjoint recurrence g_t = a_(t+1) g_(t+1) + C_t dy_t as a reverse
associative scan, carrying g across chunks in registers. With a_t h_(t-1) = h_t - delta_t B_t u_t no division
is needed:

    du = g delta B + D dy            ddelta = (g (A (h - delta B u) + u B)) softplus'
    dA = sum_t g delta (h - delta B u)    dB = sum_d g delta u    dC = sum_d dy h    dD = sum_t dy u

dB and dC sum over the channels of a group: each program writes its own partial sums (no atomics, so the
result is deterministic), and one finishing launch adds them up, together with dA, dD and ddelta_bias over the
batch and du over the groups that share one input sequence, and casts them to their inputs' dtypes. Reversed
groups walk their sequences from the end, as in the forward.
"""
import math

import torch
import triton
import triton.language as tl

from ..activations import accurate_exp
from ..launcher import Launch
from .common import combine_linear, decay_step, launch_config, program_rows, softplus_grad


@triton.jit
def _scan_backward_kernel(u_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, d_ptr, bias_ptr, dy_ptr, states_ptr,
                          du_ptr, ddelta_ptr, da_ptr, db_ptr, dc_ptr, dd_ptr, dbias_ptr,
                          channels, length, per_group, n_chunks, n_blocks, u_groups, dy_groups, reverse_from,
                          su_b, su_k, su_d, sdt_b, sdt_d, sb_b, sb_k, sb_n, sc_b, sc_k, sc_n, sdy_b, sdy_k, sdy_d,
                          N_STATE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
                          SOFTPLUS: tl.constexpr):
    pid_d = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    d_idx, d_ok, backwards, skip, bias, row_u, row_dt, row_b, row_c = program_rows(
        pid_d, batch, u_ptr, delta_ptr, b_ptr, c_ptr, d_ptr, bias_ptr, channels, per_group, u_groups, reverse_from,
        su_b, su_k, su_d, sdt_b, sdt_d, sb_b, sb_k, sc_b, sc_k, BLOCK_D)
    d64 = d_idx.to(tl.int64)
    n_idx = tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_L)
    row_dy = dy_ptr + batch * sdy_b + (((d_idx // per_group) % dy_groups).to(tl.int64) * sdy_k
                                       + (d_idx % per_group).to(tl.int64) * sdy_d)[:, None]
    row_out = (batch * channels + d64)[:, None] * length
    row_state = states_ptr + ((batch * channels + d64) * n_chunks)[:, None] * N_STATE
    partial = ((batch * n_blocks + pid_d) * N_STATE) * length
    carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    grad_a = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    grad_skip = tl.zeros((BLOCK_D,), dtype=tl.float32)
    grad_bias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for step in range(n_chunks):
        chunk = n_chunks - 1 - step
        t = chunk * BLOCK_L + cols
        pos = tl.where(backwards, length - 1 - t, t)
        pos_next = tl.where(backwards, pos - 1, pos + 1)
        ok = d_ok[:, None] & (t < length)[None, :]
        ok_next = d_ok[:, None] & (t + 1 < length)[None, :]
        u = tl.load(row_u + pos[None, :], mask=ok, other=0.0).to(tl.float32)
        dt_raw = tl.load(row_dt + pos[None, :], mask=ok, other=0.0).to(tl.float32)
        dt = decay_step(dt_raw, bias, ok, SOFTPLUS)
        dt_next = decay_step(tl.load(row_dt + pos_next[None, :], mask=ok_next, other=0.0).to(tl.float32), bias,
                             ok_next, SOFTPLUS)
        dy = tl.load(row_dy + pos[None, :], mask=ok, other=0.0).to(tl.float32)
        start_states = tl.load(row_state + chunk * N_STATE + n_idx[None, :],
                               mask=d_ok[:, None] & (n_idx < N_STATE)[None, :], other=0.0)
        grad_u = dy * skip[:, None]
        grad_dt = tl.zeros((BLOCK_D, BLOCK_L), dtype=tl.float32)
        grad_skip += tl.sum(dy * u, axis=1)
        for n in tl.static_range(N_STATE):
            a_n = tl.load(a_ptr + d_idx * N_STATE + n, mask=d_ok, other=0.0)
            b_n = tl.load(row_b + n * sb_n + pos[None, :], mask=ok, other=0.0).to(tl.float32)
            c_n = tl.load(row_c + n * sc_n + pos[None, :], mask=ok, other=0.0).to(tl.float32)
            inject = dt * u * b_n
            decay_cum, h_local = tl.associative_scan((accurate_exp(dt * a_n[:, None]), inject), axis=1,
                                                     combine_fn=combine_linear)
            start = tl.sum(tl.where(n_idx[None, :] == n, start_states, 0.0), axis=1)
            h = h_local + decay_cum * start[:, None]
            next_cum, g_local = tl.associative_scan((accurate_exp(dt_next * a_n[:, None]), c_n * dy), axis=1,
                                                    combine_fn=combine_linear, reverse=True)
            incoming = tl.sum(tl.where(n_idx[None, :] == n, carry, 0.0), axis=1)
            g = g_local + next_cum * incoming[:, None]
            first = tl.sum(tl.where(cols[None, :] == 0, g, 0.0), axis=1)
            carry = tl.where(n_idx[None, :] == n, first[:, None], carry)
            prev = h - inject
            grad_u += g * dt * b_n
            grad_dt += g * (a_n[:, None] * prev + u * b_n)
            grad_a = tl.where(n_idx[None, :] == n, grad_a + tl.sum(g * dt * prev, axis=1)[:, None], grad_a)
            in_seq = t < length
            tl.store(db_ptr + partial + n * length + pos, tl.sum(g * dt * u, axis=0), mask=in_seq)
            tl.store(dc_ptr + partial + n * length + pos, tl.sum(dy * h, axis=0), mask=in_seq)
        grad_dt_raw = tl.where(ok, grad_dt * softplus_grad(dt_raw, bias, SOFTPLUS), 0.0)
        grad_bias += tl.sum(grad_dt_raw, axis=1)
        tl.store(du_ptr + row_out + pos[None, :], grad_u, mask=ok)
        tl.store(ddelta_ptr + row_out + pos[None, :], grad_dt_raw, mask=ok)
    per_row = batch * channels + d64
    tl.store(da_ptr + per_row[:, None] * N_STATE + n_idx[None, :], grad_a,
             mask=d_ok[:, None] & (n_idx < N_STATE)[None, :])
    tl.store(dd_ptr + per_row, grad_skip, mask=d_ok)
    tl.store(dbias_ptr + per_row, grad_bias, mask=d_ok)


@triton.jit
def _scan_finish_kernel(db_part, dc_part, du_part, da_part, dd_part, dbias_part, db_out, dc_out, du_out, da_out,
                        dd_out, dbias_out, n_bc, bc_inner, blocks_per_group, n_u, u_inner, n_a, n_c, batch,
                        programs_bc, programs_u, SHARING: tl.constexpr, BLOCK: tl.constexpr,
                        BLOCK_K: tl.constexpr):
    """The backward's sums in one launch: programs [0, programs_bc) add dB's and dC's per-program partials over
    a group's channel blocks (BLOCK_K blocks per step, so that enough loads are in flight to stream the
    partials at memory speed), the next programs_u add du over the SHARING groups that read one sequence, the
    rest add dA, dD and ddelta_bias over the batch."""
    pid = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    if pid < programs_bc:
        o = pid.to(tl.int64) * BLOCK + offs
        ok = o < n_bc
        base = (o // bc_inner) * blocks_per_group * bc_inner + o % bc_inner  # int64: partials may pass 2^31
        k = tl.arange(0, BLOCK_K)
        acc_b = tl.zeros((BLOCK_K, BLOCK), dtype=tl.float32)
        acc_c = tl.zeros((BLOCK_K, BLOCK), dtype=tl.float32)
        for k0 in range(0, blocks_per_group, BLOCK_K):
            rows = k0 + k
            at = base[None, :] + rows.to(tl.int64)[:, None] * bc_inner
            mask = (rows < blocks_per_group)[:, None] & ok[None, :]
            acc_b += tl.load(db_part + at, mask=mask, other=0.0)
            acc_c += tl.load(dc_part + at, mask=mask, other=0.0)
        tl.store(db_out + o, tl.sum(acc_b, axis=0), mask=ok)
        tl.store(dc_out + o, tl.sum(acc_c, axis=0), mask=ok)
    elif pid < programs_bc + programs_u:
        o = (pid - programs_bc).to(tl.int64) * BLOCK + offs
        ok = o < n_u
        base = (o // u_inner) * SHARING * u_inner + o % u_inner
        acc = tl.zeros((BLOCK,), dtype=tl.float32)
        for s in tl.static_range(SHARING):
            acc += tl.load(du_part + base + s * u_inner, mask=ok, other=0.0)
        tl.store(du_out + o, acc, mask=ok)
    else:
        o = (pid - programs_bc - programs_u).to(tl.int64) * BLOCK + offs
        in_a = o < n_a
        in_d = (o >= n_a) & (o < n_a + n_c)
        in_bias = (o >= n_a + n_c) & (o < n_a + 2 * n_c)
        acc = tl.zeros((BLOCK,), dtype=tl.float32)
        for b in range(batch):
            acc += tl.load(da_part + b * n_a + o, mask=in_a, other=0.0)
            acc += tl.load(dd_part + b * n_c + (o - n_a), mask=in_d, other=0.0)
            acc += tl.load(dbias_part + b * n_c + (o - n_a - n_c), mask=in_bias, other=0.0)
        tl.store(da_out + o, acc, mask=in_a)
        tl.store(dd_out + (o - n_a), acc, mask=in_d)
        tl.store(dbias_out + (o - n_a - n_c), acc, mask=in_bias)


_FINISH_BLOCK = 1024


class BackwardPlan:
    """The scan's backward launches for one input layout: the scan, then the sums of its partial gradients."""

    def __init__(self, dy, u, delta, A, B, C, D, delta_bias, states, delta_softplus, reverse_from):
        batch, u_groups, per_group, length = u.shape
        groups, n_state = B.shape[1], B.shape[2]
        channels = groups * per_group
        cfg = launch_config(per_group, length, n_state)
        n_blocks = triton.cdiv(channels, cfg['BLOCK_D'])
        sharing = groups // u_groups  # groups reading each input sequence; their du add up in float32
        n_bc, n_u = batch * groups * n_state * length, (batch * u_groups * per_group * length if sharing > 1 else 0)
        n_a, n_small = channels * n_state, channels * (n_state + 2)
        # float32 partials in one buffer: dB's and dC's per program, dA's, dD's and ddelta_bias' per sample
        self.part_shapes = [(batch, n_blocks, n_state, length)] * 2 + [(batch, channels, n_state)] + \
                           [(batch, channels)] * 2
        self.part_sizes = [math.prod(shape) for shape in self.part_shapes]
        self.du_part_shape = (batch, channels, length)
        self.out_shapes = dict(du=(batch, u_groups, per_group, length), ddelta=(batch, channels, length),
                               dbc=(batch, groups, n_state, length))
        # the strides are part of the plan's key (kernel_op.layout), so they are fixed here
        self.args = (channels, length, per_group, states.shape[2], n_blocks, u_groups, dy.shape[1], reverse_from,
                     *u.stride()[:3], *delta.stride()[:2], *B.stride()[:3], *C.stride()[:3], *dy.stride()[:3])
        self.launch = Launch(_scan_backward_kernel, (n_blocks, batch), N_STATE=n_state, SOFTPLUS=delta_softplus,
                             **cfg)
        programs_bc, programs_u = triton.cdiv(n_bc, _FINISH_BLOCK), triton.cdiv(n_u, _FINISH_BLOCK)
        self.finish_args = (n_bc, n_state * length, n_blocks // groups, n_u, u_groups * per_group * length, n_a,
                            channels, batch, programs_bc, programs_u)
        self.finish = Launch(_scan_finish_kernel, (programs_bc + programs_u + triton.cdiv(n_small, _FINISH_BLOCK),),
                             SHARING=sharing, BLOCK=_FINISH_BLOCK, BLOCK_K=4, num_warps=8)
        self.sharing = sharing


def selective_scan_backward(plan, dy, u, delta, A, B, C, D, delta_bias, states):
    """Gradients (du, ddelta, dA, dB, dC, dD, ddelta_bias) in the dtypes and shapes of their inputs (the
    layout of :func:`selective_scan_forward`). ``dy`` is (B, dy_groups, KD / K, L): group k's output gradient is
    ``dy[:, k % dy_groups]`` (dy_groups = K: one per group)."""
    device = u.device
    parts = torch.empty(sum(plan.part_sizes), device=device, dtype=torch.float32).split(plan.part_sizes)
    db, dc, da, dd, dbias = (p.view(shape) for p, shape in zip(parts, plan.part_shapes))
    du = torch.empty(plan.out_shapes['du'], device=device, dtype=u.dtype)
    du_part = du if plan.sharing == 1 else torch.empty(plan.du_part_shape, device=device, dtype=torch.float32)
    ddelta = torch.empty(plan.out_shapes['ddelta'], device=device, dtype=delta.dtype)
    plan.launch(u, delta, A, B, C, D, delta_bias, dy, states, du_part, ddelta, da, db, dc, dd, dbias, *plan.args)
    db_out = torch.empty(plan.out_shapes['dbc'], device=device, dtype=B.dtype)
    dc_out = torch.empty(plan.out_shapes['dbc'], device=device, dtype=C.dtype)
    da_out, dd_out, dbias_out = (torch.empty(t.shape, dtype=t.dtype, device=device) for t in (A, D, delta_bias))
    plan.finish(db, dc, du_part, da, dd, dbias, db_out, dc_out, du, da_out, dd_out, dbias_out, *plan.finish_args)
    return du, ddelta, da_out, db_out, dc_out, dd_out, dbias_out
