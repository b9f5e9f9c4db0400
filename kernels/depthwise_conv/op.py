"""The Triton depthwise convolution as a :class:`~mlla_dense.kernels.kernel_op.KernelOp`: forward and backward
launches, planned once per input layout. The forward saves only its inputs."""
from typing import Tuple

import torch
import triton
from torch import Tensor

from ..grid_taps import TapGradients
from ..kernel_op import KernelOp, Plans
from ..launcher import Launch
from ..partial_sums import chunking
from ..strides import unit_last_stride
from .backward import _dwconv_grad_weight_kernel
from .forward import _tap_sum_kernel
from .reference import check_inputs

# Tile of the tap-sum passes (forward, input gradient): 32 tokens as 2 grid rows of 16 columns, 2 warps, chosen by
# a sweep on an H200 at MLLA-T's stage shapes and confirmed on an H100 (benchmarks/NOTES.md, thirty-fourth
# session). Tile and programs per SM of the weight-gradient pass (ten per-tap accumulators per program), measured
# on an H100, and its loop's software-pipelining stages (1: none; more load a step's tiles ahead through shared
# memory, not yet timed; the SiLU variant's loop holds the nested tap loop, which Triton does not pipeline);
# unrolling of the tap loop.
TUNING = dict(block_n=32, tile_w=16, block_c=64, num_warps=2, tap_unroll=3, grad_block_n=32, grad_block_c=32,
              grad_warps=4, grad_programs_per_sm=2, grad_stages=1)


def _grid_tiles(h, w, block_n, tile_w):
    """How many tiles of ``block_n`` tokens cover an h x w grid (grid_taps.grid_tile)."""
    if tile_w and block_n % tile_w:
        raise ValueError(f'a tile of {block_n} tokens is not whole grid rows of {tile_w}: fix TUNING')
    return triton.cdiv(h, block_n // tile_w) * triton.cdiv(w, tile_w) if tile_w else triton.cdiv(h * w, block_n)


def _tap_sum(b, h, w, c, sign, has_bias, silu, residual):
    """The tap-sum launch over (B, H*W, C) tokens (see forward.py)."""
    t = TUNING
    ncb = triton.cdiv(c, t['block_c'])
    return ncb, Launch(_tap_sum_kernel, (_grid_tiles(h, w, t['block_n'], t['tile_w']), b * ncb), SIGN=sign,
                       HAS_BIAS=has_bias, SILU=silu, RESIDUAL=residual, BLOCK_N=t['block_n'],
                       BLOCK_C=t['block_c'], TILE_W=t['tile_w'], TAP_UNROLL=t['tap_unroll'],
                       num_warps=t['num_warps'])


class _ForwardPlan:
    def __init__(self, x, weight, bias, height, width, residual, silu):
        self.b, self.n, self.c, _, _ = check_inputs(x, (height, width), weight, bias, 'silu' if silu else None)
        self.num_cblocks, self.launch = _tap_sum(self.b, height, width, self.c, 1, True, silu, residual)
        # strides are part of the plan's key (kernel_op.layout); the output is contiguous
        self.args = (self.n, height, width, self.c, self.num_cblocks, *x.stride()[:2], *x.stride()[:2],
                     self.n * self.c, self.c)


class _BackwardPlan:
    def __init__(self, dx, dy, x, weight, bias, height, width, residual, silu):
        b, n, c = self.b, self.n, self.c = x.shape
        t = TUNING
        self.grad_cblocks = triton.cdiv(c, t['grad_block_c'])
        rows = b * self.grad_cblocks
        self.num_chunks, self.tokens_per_chunk = chunking(n, rows, x.device, t['grad_programs_per_sm'],
                                                          t['grad_block_n'])
        self.part_shape = (self.num_chunks, rows, 10, t['grad_block_c'])
        self.taps = TapGradients(self.num_chunks, b, self.grad_cblocks, t['grad_block_c'], c, x.device)
        self.grad_weight = Launch(_dwconv_grad_weight_kernel, (self.num_chunks, rows), SILU=silu,
                                  BLOCK_N=t['grad_block_n'], BLOCK_C=t['grad_block_c'], STAGES=t['grad_stages'],
                                  num_warps=t['grad_warps'], **self.taps.meta)
        self.num_cblocks, self.grad_input = _tap_sum(b, height, width, c, -1, False, False, residual)
        # strides are part of the plan's key (kernel_op.layout); g is dy, or new and contiguous with the SiLU
        g_strides = (n * c, c) if silu else dy.stride()[:2]
        self.weight_args = (n, height, width, c, self.grad_cblocks, self.tokens_per_chunk, *x.stride()[:2],
                            *dy.stride()[:2], *g_strides)
        self.input_args = (n, height, width, c, self.num_cblocks, *g_strides, *dy.stride()[:2], *dx.stride()[:2])


_forward_plans = Plans(_ForwardPlan)
_backward_plans = Plans(_BackwardPlan)


def depthwise_conv_forward(x: Tensor, weight: Tensor, bias: Tensor, height: int, width: int, residual: bool,
                           silu: bool) -> Tuple[Tensor]:
    """(y,): act(conv3x3(x) + bias) (+ x) over (B, H*W, C) tokens, in x's dtype."""
    x = unit_last_stride(x)
    plan = _forward_plans((x, weight, bias), (height, width, residual, silu))
    out = torch.empty((plan.b, plan.n, plan.c), dtype=x.dtype, device=x.device)
    plan.launch(x, weight, bias, x, out, *plan.args)
    return (out,)


def depthwise_conv_backward_into(dx: Tensor, dy: Tensor, x: Tensor, weight: Tensor, bias: Tensor, height: int,
                                 width: int, residual: bool, silu: bool) -> Tuple[Tensor, Tensor]:
    """Writes the input gradient into ``dx`` (B, N, C) with unit channel stride (a view of a wider buffer is
    fine); returns (d weight, d bias)."""
    dy, x = unit_last_stride(dy), unit_last_stride(x)
    plan = _backward_plans((dx, dy, x, weight, bias), (height, width, residual, silu))
    g = torch.empty((plan.b, plan.n, plan.c), dtype=x.dtype, device=x.device) if silu else dy
    part = torch.empty(plan.part_shape, dtype=torch.float32, device=x.device)
    d_weight, d_bias = plan.taps.outputs(weight)
    plan.grad_weight(x, dy, weight, bias, g, part, *plan.weight_args, d_weight, d_bias, *plan.taps.args())
    plan.grad_input(g, weight, weight, dy, dx, *plan.input_args)
    return d_weight, d_bias


def depthwise_conv_backward(dy: Tensor, x: Tensor, weight: Tensor, bias: Tensor, height: int, width: int,
                            residual: bool, silu: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """(dx, d weight, d bias)."""
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    return (dx, *depthwise_conv_backward_into(dx, dy, x, weight, bias, height, width, residual, silu))


depthwise_conv_op = KernelOp('depthwise_conv', depthwise_conv_forward, depthwise_conv_backward,
                             save=('x', 'weight', 'bias'), grads_for=('x', 'weight', 'bias'),
                             options=('height', 'width', 'residual', 'silu'))
depthwise_conv_op.backward_into = depthwise_conv_backward_into
