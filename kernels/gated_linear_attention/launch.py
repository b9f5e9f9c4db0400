"""Launch sizes and the launches of one forward and one backward, over all scan directions of a call."""
import os

import torch
import triton
import triton.language as tl

from .backward import _chunk_backward_kernel
from .common import _state_pass_kernel, state_size
from .forward import _chunk_output_kernel, _chunk_state_kernel

# Chunk lengths by decay kind (one per head: (T, T) products on tensor cores; one per key channel: (T, T, 16)
# elementwise weights per 16-channel key slice), warps of the chunk kernels (8 for the backward and for wide
# tiles: the sm_90 compile check showed 4 warps spilling there), the state pass's elements per program and
# chunks per step, narrow for grids of few (batch, head) rows and wide from ``pass_wide_programs`` programs on
# (swept on an H200 at 2x800x1344 and 64x224x224, benchmarks/results/gated_linear_attention_h200.log and
# design_space_forget_gate_profile_twenty_first_session.json; the chunk sizes are not swept).
TUNING = dict(chunk=dict(head=64, channel=16), key_slice=16, value_block=64, num_warps=4, wide_warps=8,
              wide_tile=64 * 64, pass_narrow=dict(elements=16, chunks=32), pass_wide=dict(elements=64, chunks=8),
              pass_wide_programs=1024, pass_warps=4)


class Layout:
    """Tiles and arithmetic of one call: BK / BV = key / value widths padded to powers of two (>= 16, tl.dot's
    minimum), T tokens per chunk, KS key channels per slice, VB value channels per block. Products take 16-bit operands for bfloat16 inputs
    and float32 operands otherwise ('tf32' for float16 inputs: their states may exceed float16's range;
    'tf32x3' for float32 inputs: float32-accurate). Under the Triton interpreter chunks are 16 tokens, so that
    small test sequences cross several, and operands are float32 (the interpreter multiplies bfloat16 tiles as
    integers), and the state pass takes two chunks per step, so that they cross several steps.

    What leads to dq and dk in the backward, and the forward's chunk states it reads (where a backward follows),
    is float32-accurate whatever the input dtype (``common.mm_float32``): the log decays' gradient sums terms
    q dq - k dk that nearly cancel (backward.py), and 16-bit dO, decayed keys or states (0.1-0.3% per term) made it
    several percent off at MLLA-T's stage-1 length (67,200 tokens; benchmarks/NOTES.md). Those products take two
    tf32 products rather than tf32x3's three where one operand holds 16-bit inputs (``exact_inputs``), which tf32
    holds exactly. dv, which that gradient does not read, multiplies as the forward does."""

    def __init__(self, q: torch.Tensor, v: torch.Tensor, per_channel: bool):
        self.interpreted = interpreted = os.environ.get('TRITON_INTERPRET') == '1'
        self.k, self.v = q.shape[-1], v.shape[-1]
        self.block_k = max(16, triton.next_power_of_2(self.k))
        self.block_v = max(16, triton.next_power_of_2(self.v))
        self.per_channel = per_channel
        self.chunk = 16 if interpreted else TUNING['chunk']['channel' if per_channel else 'head']
        self.key_slice = min(self.block_k, TUNING['key_slice']) if per_channel else self.block_k
        self.value_block = min(self.block_v, TUNING['value_block'])
        self.dot_dtype = tl.bfloat16 if q.dtype == torch.bfloat16 and not interpreted else tl.float32
        self.precision = 'tf32x3' if q.dtype == torch.float32 else 'tf32'
        self.exact_inputs = q.dtype in (torch.bfloat16, torch.float16)
        self.state_size = state_size(self.block_k, self.block_v)

    def num_chunks(self, n: int) -> int:
        return triton.cdiv(n, self.chunk)

    def meta(self, direction: str, backward: bool = False) -> dict:
        """Kernel arguments of one direction (the backward's with more warps)."""
        wide = backward or self.chunk * max(self.key_slice, self.value_block) >= TUNING['wide_tile']
        return dict(K=self.k, V=self.v, BK=self.block_k, BV=self.block_v, KS=self.key_slice, VB=self.value_block,
                    T=self.chunk, PER_CHANNEL=self.per_channel, REVERSE=direction.endswith('reversed'),
                    COLUMNS=direction.startswith('columns'), DOT_DTYPE=self.dot_dtype, PRECISION=self.precision,
                    num_warps=TUNING['wide_warps' if wide else 'num_warps'])

    def pass_states(self, local: torch.Tensor, states: torch.Tensor, backward: bool):
        """Chunk-local states (rows, chunks, state_size) -> ``states``: those entering (leaving, ``backward``)
        each chunk."""
        rows, chunks, _ = local.shape
        elements, per_step = self.pass_tiling(rows, chunks)
        tiles = triton.cdiv(self.state_size, elements)
        _state_pass_kernel[(rows, tiles)](local, states, chunks, BK=self.block_k, BV=self.block_v, E=elements,
                                          P=per_step, BACKWARD=backward, num_warps=TUNING['pass_warps'])

    def pass_tiling(self, rows: int, chunks: int):
        """(state elements per program, chunks per step) of the state pass over ``rows`` (batch, head) rows. With
        few rows the pass's sequential chain sets its time: narrow programs, long steps; with many the GPU is full
        anyway and the work per step counts: wide programs, short steps. Never more chunks per step than the
        sequence has (a pass over 4 chunks would otherwise scan 32 positions, 28 of them masked)."""
        wide = TUNING['pass_wide']
        tiling = wide if rows * triton.cdiv(self.state_size, wide['elements']) >= TUNING['pass_wide_programs'] \
            else TUNING['pass_narrow']
        per_step = 2 if self.interpreted else tiling['chunks']
        return tiling['elements'], min(per_step, max(2, triton.next_power_of_2(chunks)))


def _bnh(t):
    """Batch, token and head strides of a (B, N, H[, C]) tensor."""
    return t.stride(0), t.stride(1), t.stride(2)


def _grid_args(q, grid):
    b, n, h = q.shape[:3]
    grid_h, grid_w = grid if grid is not None else (1, n)
    return n, h, grid_h, grid_w


def forward(q, k, v, log_decay, directions, grid, keep_states=True):
    """(o (B, N, H, V) float32, z (B, N, H) float32, states (directions, B*H, chunks, state_size) float32). Without
    ``keep_states`` (no backward follows) the chunk states take the forward's operand dtype (16-bit products for
    bfloat16 inputs, see :class:`Layout`), one direction's at a time, and states is None."""
    b, n, h, _ = q.shape
    lay = Layout(q, v, log_decay.dim() == 4)
    chunks = lay.num_chunks(n)
    o = torch.empty((b, n, h, lay.v), dtype=torch.float32, device=q.device)
    z = torch.empty((b, n, h), dtype=torch.float32, device=q.device)
    states = torch.empty((len(directions) if keep_states else 1, b * h, chunks, lay.state_size),
                         dtype=torch.float32, device=q.device)
    local = torch.empty_like(states[0])
    sizes = _grid_args(q, grid)
    for i, direction in enumerate(directions):
        entering = states[i if keep_states else 0]
        _chunk_state_kernel[(chunks, b * h)](k, v, k, log_decay, local, *sizes, chunks, *_bnh(k), *_bnh(v),
                                             0, 0, 0, *_bnh(log_decay), FROM_START=False, HAS_W=False,
                                             FLOAT32_PRODUCTS=keep_states, Y_EXACT=lay.exact_inputs,
                                             **lay.meta(direction))
        lay.pass_states(local, entering, backward=False)
        _chunk_output_kernel[(chunks, b * h)](q, k, v, log_decay, entering, o, z, *sizes, chunks, *_bnh(q),
                                              *_bnh(k), *_bnh(v), *_bnh(log_decay), *_bnh(o), *_bnh(z),
                                              ACCUMULATE=i > 0, **lay.meta(direction))
    return o, z, states if keep_states else None


def backward(do, dz, q, k, v, log_decay, states, directions, grid):
    """(dq, dk, dv, dlog_decay) in the dtypes of q, k, v, log_decay; ``dz`` None (z unused) counts as zeros."""
    b, n, h, _ = q.shape
    lay = Layout(q, v, log_decay.dim() == 4)
    chunks = lay.num_chunks(n)
    accumulate = len(directions) > 1
    grads = [torch.empty(t.shape, dtype=torch.float32 if accumulate else t.dtype, device=t.device)
             for t in (q, k, v)]
    dcum = torch.empty((len(directions),) + log_decay.shape, dtype=torch.float32, device=q.device)
    grad_local, grad_states = torch.empty_like(states[0]), torch.empty_like(states[0])
    sizes = _grid_args(q, grid)
    if dz is None:
        dz = torch.zeros(q.shape[:3], dtype=torch.float32, device=q.device)
    for i, direction in enumerate(directions):
        meta = lay.meta(direction, backward=True)
        _chunk_state_kernel[(chunks, b * h)](q, do, dz, log_decay, grad_local, *sizes, chunks, *_bnh(q), *_bnh(do),
                                             *_bnh(dz), *_bnh(log_decay), FROM_START=True, HAS_W=True,
                                             FLOAT32_PRODUCTS=True, Y_EXACT=False, **meta)
        lay.pass_states(grad_local, grad_states, backward=True)
        _chunk_backward_kernel[(chunks, b * h)](
            q, k, v, log_decay, do, dz, states[i], grad_states, *grads, dcum[i], *sizes, chunks,
            *_bnh(q), *_bnh(k), *_bnh(v), *_bnh(log_decay), *_bnh(do), *_bnh(dz),
            *(s for t in grads for s in _bnh(t)), *_bnh(dcum[i]), ACCUMULATE=i > 0, EXACT_INPUTS=lay.exact_inputs,
            **meta)
    dlog_decay = dcum.sum(0) if len(directions) > 1 else dcum[0]
    return tuple(g.to(t.dtype) for g, t in zip(grads, (q, k, v))) + (dlog_decay.to(log_decay.dtype),)
