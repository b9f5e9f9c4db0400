"""Launch-size choices and small launch helpers shared by the forward and backward passes."""
import os

import torch
import triton
import triton.language as tl

from ..dependent_launch import dependent_launch
from ..launcher import Launch, is_traced
from .common import finish_pairs_kernel
from .rope import table_dtype

# Measured on an H100 (benchmarks/NOTES.md): channels per program; (tokens per tile, warps) of each pass (the
# dk/dv pass holds ten per-tap accumulators, hence its narrower tile); token tiles per program of the output
# pass; 16-bit products; unrolling of the output pass's LePE taps; programs per SM of the chunked passes as
# (fewer, at least) ``many_rows`` rows of (batch, channel group): the detection-size calls have few rows and
# long token ranges, the classification batches (64x224x224: 128 rows) many rows and short ranges.
TUNING = dict(group_width=32, tiles=dict(reduce=(64, 4), output=(64, 4), grad_q=(64, 4), grad_kv=(32, 4)),
              output_tiles=1, dot_16bit=True, lepe_unroll=3, many_rows=64, reduce_programs_per_sm=(4, 3),
              backward_programs_per_sm=(2, 4))


def full_precision(*tensors: torch.Tensor) -> bool:
    """Whether a call runs in float32 throughout (every input float32): float32 products and RoPE tables."""
    return all(x.dtype == torch.float32 for x in tensors)


class Layout:
    """How the heads of one call map onto programs and which arithmetic their products use.

    A program covers G = max(1, group_width // D) whole heads (BLOCK_C = next power of 2 of G * D lanes).
    fp32 inputs multiply in 'tf32x3' (three tf32 tensor-core products, fp32-accurate: 1e-5 relative to float64
    in the GPU tests; 'ieee' spilled registers and was 1.5x slower end to end, benchmarks/NOTES.md); 16-bit
    inputs in tf32 on float32 operands, or with ``dot_16bit`` in their own dtype (fp32 accumulation either
    way). Per-head sums use 'tf32x3'. Under the Triton interpreter (TRITON_INTERPRET=1, the CPU tests) products
    always take float32 operands: the Triton 3.6 interpreter multiplies bfloat16 tiles as raw integers. Compiling
    for a GPU from CPU tensors (tests/test_kernels/compile_for_gpu.py) therefore builds the GPU's 16-bit products.
    """

    def __init__(self, channels: int, num_heads: int, *tensors):
        t = TUNING
        self.head_dim = channels // num_heads
        self.heads_per_group = max(1, min(num_heads, t['group_width'] // self.head_dim))
        self.group_channels = self.heads_per_group * self.head_dim
        self.num_groups = triton.cdiv(num_heads, self.heads_per_group)
        self.block_c = max(16, triton.next_power_of_2(self.group_channels))
        self.tiles = t['tiles']
        self.output_tiles = t['output_tiles']
        many_rows = tensors[0].shape[0] * self.num_groups >= t['many_rows']
        self.reduce_programs_per_sm = t['reduce_programs_per_sm'][many_rows]
        self.backward_programs_per_sm = t['backward_programs_per_sm'][many_rows]
        self.lepe_unroll = t['lepe_unroll']
        self.channels = channels
        self.pdl = dependent_launch() and not is_traced()  # Inductor launches plainly
        dtype = tensors[0].dtype
        full = full_precision(*tensors)
        self.table_dtype = table_dtype(torch.float32 if full else dtype)
        self.precision = 'tf32x3' if full else 'tf32'
        self.sum_precision = 'tf32x3'
        if full or not t['dot_16bit'] or os.environ.get('TRITON_INTERPRET') == '1':
            self.dot_dtype = tl.float32
        else:
            self.dot_dtype = tl.bfloat16 if dtype == torch.bfloat16 else tl.float16

    def block_n(self, *passes: str) -> int:
        """Tokens per tile of a pass (the largest of several passes that share one chunking)."""
        return max(self.tiles[p][0] for p in passes)

    def meta(self, pass_name: str) -> dict:
        """Meta-parameters of one pass's launch (its token tile and warps, a dependent launch where available);
        one pipeline stage for wide groups, whose staged tiles would not fit in shared memory."""
        block_n, num_warps = self.tiles[pass_name]
        return dict(C=self.channels, D=self.head_dim, G=self.heads_per_group, BLOCK_N=block_n,
                    BLOCK_C=self.block_c, DOT_DTYPE=self.dot_dtype, PRECISION=self.precision,
                    num_warps=num_warps, num_stages=1 if self.block_c > 64 else 2, PDL=self.pdl,
                    launch_pdl=self.pdl)


class FinishPairs:
    """The launch that sums chunk partials (chunks, R, 2 BLOCK_C^2 + BLOCK_C) into (R, BLOCK_C^2 + BLOCK_C): the
    block-diagonal matrix ``scale * (sum cos part - swap(sum sine part))`` and the summed vector (see
    finish_pairs_kernel), for one layout."""

    def __init__(self, num_chunks: int, rows: int, scale: float, lay: Layout):
        self.shape = (rows, lay.block_c ** 2 + lay.block_c)
        self.args = (num_chunks, scale)
        self.launch = Launch(finish_pairs_kernel, (rows, lay.block_c + 1), BLOCK_C=lay.block_c, D=lay.head_dim,
                             BLOCK_K=min(128, triton.next_power_of_2(num_chunks)), PDL=lay.pdl, launch_pdl=lay.pdl)

    def __call__(self, part: torch.Tensor) -> torch.Tensor:
        out = torch.empty(self.shape, dtype=torch.float32, device=part.device)
        self.launch(part, out, *self.args)
        return out
