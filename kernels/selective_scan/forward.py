"""Triton forward of the selective scan: y and the chunk-start states the backward restarts from.

One program owns BLOCK_D channels of one batch element and walks the sequence in chunks of BLOCK_L
positions. Inside a chunk the linear recurrence h_t = a_t h_(t-1) + b_t is an associative scan over
(a, b) pairs; the state entering the chunk is carried in registers. All arithmetic is float32.

Two layout options serve SS2D without copies (see :func:`mlla_dense.kernels.selective_scan.ss2d_paths`): group k
reads the input sequence ``k % u_groups`` of u (B, u_groups, per_group, L), so paths share one copy of their
input; groups from ``reverse_from`` on walk their sequences from the end, so a reversed path is index
arithmetic, and every per-position tensor (delta, B, C, y) stays in its sequence's own order.
"""
import torch
import triton
import triton.language as tl

from ..activations import accurate_exp
from ..launcher import Launch
from .common import combine_linear, decay_step, launch_config, program_rows


@triton.jit
def _scan_forward_kernel(u_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, d_ptr, bias_ptr, y_ptr, states_ptr,
                         channels, length, per_group, n_chunks, u_groups, reverse_from,
                         su_b, su_k, su_d, sdt_b, sdt_d, sb_b, sb_k, sb_n, sc_b, sc_k, sc_n,
                         N_STATE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
                         SOFTPLUS: tl.constexpr):
    pid_d = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    d_idx, d_ok, backwards, skip, bias, row_u, row_dt, row_b, row_c = program_rows(
        pid_d, batch, u_ptr, delta_ptr, b_ptr, c_ptr, d_ptr, bias_ptr, channels, per_group, u_groups, reverse_from,
        su_b, su_k, su_d, sdt_b, sdt_d, sb_b, sb_k, sc_b, sc_k, BLOCK_D)
    n_idx = tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_L)
    row_y = y_ptr + (batch * channels + d_idx.to(tl.int64))[:, None] * length
    row_state = states_ptr + ((batch * channels + d_idx.to(tl.int64)) * n_chunks)[:, None] * N_STATE
    state = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for chunk in range(n_chunks):
        t = chunk * BLOCK_L + cols
        pos = tl.where(backwards, length - 1 - t, t)
        ok = d_ok[:, None] & (t < length)[None, :]
        tl.store(row_state + chunk * N_STATE + n_idx[None, :], state, mask=d_ok[:, None] & (n_idx < N_STATE)[None, :])
        u = tl.load(row_u + pos[None, :], mask=ok, other=0.0).to(tl.float32)
        dt = decay_step(tl.load(row_dt + pos[None, :], mask=ok, other=0.0).to(tl.float32), bias, ok, SOFTPLUS)
        y = u * skip[:, None]
        for n in tl.static_range(N_STATE):
            a_n = tl.load(a_ptr + d_idx * N_STATE + n, mask=d_ok, other=0.0)
            b_n = tl.load(row_b + n * sb_n + pos[None, :], mask=ok, other=0.0).to(tl.float32)
            c_n = tl.load(row_c + n * sc_n + pos[None, :], mask=ok, other=0.0).to(tl.float32)
            decay = accurate_exp(dt * a_n[:, None])
            decay_cum, h_local = tl.associative_scan((decay, dt * u * b_n), axis=1, combine_fn=combine_linear)
            start = tl.sum(tl.where(n_idx[None, :] == n, state, 0.0), axis=1)
            h = h_local + decay_cum * start[:, None]
            y += c_n * h
            end = tl.sum(tl.where(cols[None, :] == BLOCK_L - 1, h, 0.0), axis=1)
            state = tl.where(n_idx[None, :] == n, end[:, None], state)
        tl.store(row_y + pos[None, :], y, mask=ok)


class ForwardPlan:
    """The scan's forward launch for one input layout."""

    def __init__(self, u, delta, A, B, C, D, delta_bias, delta_softplus, reverse_from):
        batch, u_groups, per_group, length = u.shape
        groups, n_state = B.shape[1], B.shape[2]
        self.channels = groups * per_group
        cfg = launch_config(per_group, length, n_state)
        self.n_chunks = triton.cdiv(length, cfg['BLOCK_L'])
        self.y_shape = (batch, self.channels, length)
        self.states_shape = (batch, self.channels, self.n_chunks, n_state)
        # the strides are part of the plan's key (kernel_op.layout), so they are fixed here
        self.args = (self.channels, length, per_group, self.n_chunks, u_groups, reverse_from,
                     *u.stride()[:3], *delta.stride()[:2], *B.stride()[:3], *C.stride()[:3])
        self.launch = Launch(_scan_forward_kernel, (triton.cdiv(self.channels, cfg['BLOCK_D']), batch),
                             N_STATE=n_state, SOFTPLUS=delta_softplus, **cfg)


def selective_scan_forward(plan, u, delta, A, B, C, D, delta_bias):
    """(y float32 (B, KD, L), states float32 (B, KD, n_chunks, N)): the scan and its chunk-start states.
    u is (B, u_groups, KD / K, L), delta (B, KD, L); groups >= ``reverse_from`` run backwards."""
    y = torch.empty(plan.y_shape, device=u.device, dtype=torch.float32)
    states = torch.empty(plan.states_shape, device=u.device, dtype=torch.float32)
    plan.launch(u, delta, A, B, C, D, delta_bias, y, states, *plan.args)
    return y, states
