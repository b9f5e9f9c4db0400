"""Triton backward of the selective scan.

Walks the chunks from last to first. In each chunk it rebuilds the states h_t from the saved chunk-start state
(a forward associative scan), then runs the adjoint recurrence g_t = a_(t+1) g_(t+1) + C_t dy_t as a reverse
associative scan, carrying g across chunks in registers. With a_t h_(t-1) = h_t - delta_t B_t u_t no division
is needed:

    du = g delta B + D dy            ddelta = (g (A (h - delta B u) + u B)) softplus'
    dA = sum_t g delta (h - delta B u)    dB = sum_d g delta u    dC = sum_d dy h    dD = sum_t dy u

dB and dC sum over the channels of a group: each program writes its own partial sums (no atomics, so the
result is deterministic) and the caller adds them up, as it does for dA, dD and ddelta_bias over the batch,
and for du over the groups that share one input sequence. Reversed groups walk their sequences from the end, as
in the forward.
"""
import torch
import triton
import triton.language as tl

from ..activations import accurate_exp
from ..launcher import Launch
from .common import combine_linear, decay_step, launch_config, program_rows, softplus_grad


@triton.jit
def _scan_backward_kernel(u_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, d_ptr, bias_ptr, dy_ptr, states_ptr,
                          du_ptr, ddelta_ptr, da_ptr, db_ptr, dc_ptr, dd_ptr, dbias_ptr,
                          channels, length, per_group, n_chunks, n_blocks, u_groups, reverse_from,
                          su_b, su_k, su_d, sdt_b, sdt_d, sb_b, sb_k, sb_n, sc_b, sc_k, sc_n, sdy_b, sdy_d,
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
    row_dy = dy_ptr + batch * sdy_b + d64[:, None] * sdy_d
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


class BackwardPlan:
    """The scan's backward launch for one input layout, and how its partial gradients are summed."""

    def __init__(self, dy, u, delta, A, B, C, D, delta_bias, states, delta_softplus, reverse_from):
        batch, u_groups, per_group, length = u.shape
        groups, n_state = B.shape[1], B.shape[2]
        channels = groups * per_group
        cfg = launch_config(per_group, length, n_state)
        n_blocks = triton.cdiv(channels, cfg['BLOCK_D'])
        self.sharing = groups // u_groups  # groups reading each input sequence; their du add up in float32
        self.du_dtype = u.dtype if self.sharing == 1 else torch.float32
        self.shapes = dict(du=(batch, channels, length), da=(batch, channels, n_state),
                           dbc=(batch, n_blocks, n_state, length), dd=(batch, channels))
        self.group_view = (batch, groups, n_blocks // groups, n_state, length)
        self.du_view = (batch, self.sharing, u_groups, per_group, length)
        self.args = (channels, length, per_group, states.shape[2], n_blocks, u_groups, reverse_from)
        self.launch = Launch(_scan_backward_kernel, (n_blocks, batch), N_STATE=n_state, SOFTPLUS=delta_softplus,
                             **cfg)


def selective_scan_backward(plan, dy, u, delta, A, B, C, D, delta_bias, states):
    """Gradients (du, ddelta, dA, dB, dC, dD, ddelta_bias) in the dtypes and shapes of their inputs (the
    layout of :func:`selective_scan_forward`)."""
    shapes = plan.shapes
    f32 = dict(device=u.device, dtype=torch.float32)
    du = torch.empty(shapes['du'], device=u.device, dtype=plan.du_dtype)
    ddelta = torch.empty(shapes['du'], device=u.device, dtype=delta.dtype)
    da = torch.empty(shapes['da'], **f32)
    db = torch.empty(shapes['dbc'], **f32)
    dc = torch.empty(shapes['dbc'], **f32)
    dd = torch.empty(shapes['dd'], **f32)
    dbias = torch.empty(shapes['dd'], **f32)
    plan.launch(u, delta, A, B, C, D, delta_bias, dy, states, du, ddelta, da, db, dc, dd, dbias, *plan.args,
                u.stride(0), u.stride(1), u.stride(2), delta.stride(0), delta.stride(1),
                B.stride(0), B.stride(1), B.stride(2), C.stride(0), C.stride(1), C.stride(2),
                dy.stride(0), dy.stride(1))
    db = db.view(plan.group_view).sum(2)
    dc = dc.view(plan.group_view).sum(2)
    du = du.view(plan.du_view)
    du = du[:, 0] if plan.sharing == 1 else du.sum(1).to(u.dtype)
    return (du, ddelta, da.sum(0).to(A.dtype), db.to(B.dtype), dc.to(C.dtype), dd.sum(0).to(D.dtype),
            dbias.sum(0).to(delta_bias.dtype))
