"""Pieces shared by the selective-scan kernels: the scan's combine function, the step size, launch sizes."""
import os

import triton
import triton.language as tl


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
        x = tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))
    return tl.where(ok, x, 0.0)


@triton.jit
def softplus_grad(dt, bias, SOFTPLUS: tl.constexpr):
    """d softplus(dt + bias) / d dt (1 without softplus)."""
    x = dt + bias[:, None]
    if SOFTPLUS:
        return tl.where(x > 20.0, 1.0, 1.0 / (1.0 + tl.exp(-tl.minimum(x, 20.0))))
    return tl.full(x.shape, 1.0, tl.float32)


def launch_config(per_group: int, length: int, n_state: int) -> dict:
    """Tile sizes: BLOCK_D channels (a power of two dividing the group size, so a program never spans two
    groups and its dB/dC partial sums belong to one group) by BLOCK_L positions per chunk. The interpreter
    uses short chunks so that small test sequences cross several of them."""
    block_d = 1
    while block_d < 8 and per_group % (2 * block_d) == 0:
        block_d *= 2
    max_l = 16 if os.environ.get('TRITON_INTERPRET') == '1' else 256
    block_l = min(max_l, triton.next_power_of_2(max(length, 2)))
    return dict(BLOCK_D=block_d, BLOCK_L=block_l, BLOCK_N=triton.next_power_of_2(n_state), num_warps=4)
