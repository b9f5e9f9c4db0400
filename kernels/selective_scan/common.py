"""Pieces shared by the selective-scan kernels: the scan's combine function, the step size, launch sizes."""
import os

import triton
import triton.language as tl

from ..activations import accurate_exp


@triton.jit
def combine_linear(a_left, b_left, a_right, b_right):
    """Compose h -> a_left h + b_left, then h -> a_right h + b_right (the recurrence is associative)."""
    return a_left * a_right, a_right * b_left + b_right


@triton.jit
def decay_step(dt, bias, ok, SOFTPLUS: tl.constexpr):
    """delta_t = softplus(dt + bias) (or dt + bias); 0 outside the sequence, so padding carries the state.
    Above 20, softplus(x) is x, as in torch.nn.functional.softplus and mamba_ssm."""
    x = dt + bias[:, None]
    if SOFTPLUS:
        x = tl.where(x > 20.0, x, tl.log(1.0 + accurate_exp(tl.minimum(x, 20.0))))
    return tl.where(ok, x, 0.0)


@triton.jit
def softplus_grad(dt, bias, SOFTPLUS: tl.constexpr):
    """d softplus(dt + bias) / d dt (1 without softplus)."""
    x = dt + bias[:, None]
    if SOFTPLUS:
        return tl.where(x > 20.0, 1.0, tl.math.div_rn(1.0, 1.0 + accurate_exp(-tl.minimum(x, 20.0))))
    return tl.full(x.shape, 1.0, tl.float32)


@triton.jit
def program_rows(pid_d, batch, u_ptr, delta_ptr, b_ptr, c_ptr, d_ptr, bias_ptr, channels, per_group, u_groups,
                 reverse_from, su_b, su_k, su_d, sdt_b, sdt_d, sb_b, sb_k, sc_b, sc_k, BLOCK_D: tl.constexpr):
    """What both kernels derive from their program id: the channels, whether their group runs backwards, D and
    delta_bias of those channels, and the row pointers of u (group k reads sequence k % u_groups), delta, B, C."""
    d_idx = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    d_ok = d_idx < channels
    group = (d_idx // per_group).to(tl.int64)
    backwards = (pid_d * BLOCK_D) // per_group >= reverse_from
    skip = tl.load(d_ptr + d_idx, mask=d_ok, other=0.0)
    bias = tl.load(bias_ptr + d_idx, mask=d_ok, other=0.0)
    row_u = u_ptr + batch * su_b + ((group % u_groups) * su_k + (d_idx % per_group) * su_d)[:, None]
    row_dt = delta_ptr + batch * sdt_b + d_idx.to(tl.int64)[:, None] * sdt_d
    row_b = b_ptr + batch * sb_b + group[:, None] * sb_k
    row_c = c_ptr + batch * sc_b + group[:, None] * sc_k
    return d_idx, d_ok, backwards, skip, bias, row_u, row_dt, row_b, row_c


def launch_config(per_group: int, length: int, n_state: int) -> dict:
    """Tile sizes: BLOCK_D channels by BLOCK_L positions per chunk. One channel per program: the scan is a
    sequential walk over chunks, so the grid needs many programs (an H100 sweep at VMamba-T's 800x1344 stage
    shapes, NOTES.md, made 1 x 256 with 4 warps fastest, forward and backward, 2-4x faster than 8 channels).
    A program never spans two groups (BLOCK_D divides ``per_group``), so its dB/dC partial sums belong to one
    group. The interpreter uses short chunks so that small test sequences cross several of them."""
    max_l = 16 if os.environ.get('TRITON_INTERPRET') == '1' else 256
    block_l = min(max_l, triton.next_power_of_2(max(length, 2)))
    return dict(BLOCK_D=1, BLOCK_L=block_l, BLOCK_N=triton.next_power_of_2(n_state), num_warps=4)
