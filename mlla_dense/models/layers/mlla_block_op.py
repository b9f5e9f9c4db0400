"""The fused MLLA block (mlla_block_function.py) as a pair of custom ops, for torch.compile (with MLLA's
``compile_fused_blocks``).

Compiled op by op, the block is ~12 kernel ops (``triton_op``s that Inductor launches from its generated code) and
the products and elementwise steps around them, which Inductor fuses anew; its hand-written backward and fused
elementwise launches are lost. Here the compiled graph calls the fused block's forward and backward as two opaque
ops (the same launches as in eager mode), and Inductor compiles what lies between the blocks (stem, patch
merging, output norms, the loss): one graph, no breaks, a compile 2.8x shorter. Timings of both paths are in
benchmarks/NOTES.md.

The graph casts the block's product weights into their packed buffer and builds the linear attention's RoPE
tables (Inductor fuses and places that work); the ops take them as inputs, and their kernels take fresh arrival
counters per call (kernels/partial_sums.py), so their launch plans allocate nothing that outlives a call (no
pointer table, no cached tables or counters: inside cudagraph trees' memory pool such tensors could be handed out
again). ``mlla_dense::mlla_block_fwd`` returns the output and the tensors the
backward reads (its inputs are passed to the backward again rather than returned: a custom op's outputs may
not alias its inputs); ``mlla_dense::mlla_block_bwd`` returns the input's and every parameter's gradient,
act_proj's and in_proj's as the one (2C, C) product they come from (outputs may not alias each other either).
"""

from typing import List, Optional

import torch
from torch import Tensor

from mlla_dense.kernels import launcher
from mlla_dense.kernels.partial_sums import per_call_counters
from .mlla_block_function import PARAMETERS, BlockConfig, _backward, _forward, _Weights, split_gate_in_grads

# the gradients the backward op returns after the input's: PARAMETERS without the four halves of the joint
# product, then that product's weight and bias
_GATE_IN = ('act_proj.weight', 'in_proj.weight', 'act_proj.bias', 'in_proj.bias')
_OWN_GRADS = [name for name in PARAMETERS if name not in _GATE_IN]
# Parameters whose gradients come out of products (float32); the others' are in the parameter's dtype.
_PRODUCTS = ('attn.qk', 'out_proj', 'mlp.fc1', 'mlp.fc2')
_STORED = 14  # tensors _forward saves besides the input, of which the last five are recomputed with recompute


def _run_forward(x, keep, params, packed, tables, cfg: BlockConfig, saving: bool) -> List[Tensor]:
    w = _Weights(params, packed, x.shape[-1])
    with torch.autocast(x.device.type, enabled=False):
        out, saved = _forward(x, cfg, keep, w, saving, tables)
    if not saving:
        return [out]
    assert len(saved) == 1 + _STORED, 'mlla_block_bwd reads what _forward saves in that order'
    return [out, *(t for t in saved[1:] if t is not None)]


@torch.library.custom_op('mlla_dense::mlla_block_fwd', mutates_args=())
def mlla_block_fwd(x: Tensor, keep: Optional[Tensor], params: List[Tensor], packed: Tensor, rope_cos: Tensor,
                   rope_sin: Tensor, height: int, width: int, num_heads: int, eps1: float, eps2: float,
                   dtype: torch.dtype, keep_prob: float, recompute: bool, saving: bool) -> List[Tensor]:
    """[output] or, with ``saving``, [output, *what the backward reads]."""
    cfg = BlockConfig(height, width, num_heads, eps1, eps2, dtype, keep_prob, recompute)
    with per_call_counters():
        return _run_forward(x, keep, params, packed, (rope_cos, rope_sin), cfg, saving)


@mlla_block_fwd.register_fake
def _(x, keep, params, packed, rope_cos, rope_sin, height, width, num_heads, eps1, eps2, dtype, keep_prob,
      recompute, saving):
    # the same code on fake tensors: allocations happen, launches do not (launcher.traced_launches)
    cfg = BlockConfig(height, width, num_heads, eps1, eps2, dtype, keep_prob, recompute)
    with launcher.traced_launches():
        return _run_forward(x, keep, params, packed, (rope_cos, rope_sin), cfg, saving)


@torch.library.custom_op('mlla_dense::mlla_block_bwd', mutates_args=())
def mlla_block_bwd(d_out: Tensor, x: Tensor, keep: Optional[Tensor], params: List[Tensor], packed: Tensor,
                   rope_cos: Tensor, rope_sin: Tensor, saved: List[Tensor], height: int, width: int,
                   num_heads: int, eps1: float, eps2: float, dtype: torch.dtype, keep_prob: float,
                   recompute: bool) -> List[Tensor]:
    """[d x, *gradients of PARAMETERS but the joint product's halves, d gate_in weight, d gate_in bias]."""
    cfg = BlockConfig(height, width, num_heads, eps1, eps2, dtype, keep_prob, recompute)
    w = _Weights(params, packed, x.shape[-1])
    stored = list(saved) + [None] * (_STORED - len(saved))
    with torch.autocast(x.device.type, enabled=False), per_call_counters():
        d_x, grads = _backward(d_out.contiguous(), cfg, keep, w, [x, *stored], (rope_cos, rope_sin))
    return [d_x, *(grads[name] for name in _OWN_GRADS), grads['gate_in.weight'], grads['gate_in.bias']]


@mlla_block_bwd.register_fake
def _(d_out, x, keep, params, packed, rope_cos, rope_sin, saved, height, width, num_heads, eps1, eps2, dtype,
      keep_prob, recompute):
    p = dict(zip(PARAMETERS, params))
    c = x.shape[-1]
    own = [p[name].new_empty(p[name].shape, dtype=torch.float32 if name.startswith(_PRODUCTS) else p[name].dtype)
           for name in _OWN_GRADS]
    return [x.new_empty(x.shape), *own, x.new_empty((2 * c, c), dtype=torch.float32),
            x.new_empty((2 * c,), dtype=torch.float32)]


def _setup_context(ctx, inputs, output):
    x, keep, params, packed, rope_cos, rope_sin, *options = inputs
    ctx.options = options[:-1]
    ctx.num_params = len(params)
    ctx.set_materialize_grads(False)  # only the output's gradient is used
    ctx.save_for_backward(x, keep, packed, rope_cos, rope_sin, *params, *output[1:])


def _backward_op(ctx, grads):
    no_grads = [None] * (len(ctx.options) + 1)
    if grads[0] is None:
        return None, None, [None] * ctx.num_params, None, None, None, *no_grads
    x, keep, packed, rope_cos, rope_sin, *rest = ctx.saved_tensors
    params, saved = rest[:ctx.num_params], rest[ctx.num_params:]
    out = mlla_block_bwd(grads[0], x, keep, list(params), packed, rope_cos, rope_sin, list(saved), *ctx.options)
    d_x, *own = out[:-2]
    by_name = dict(zip(_OWN_GRADS, own), **split_gate_in_grads(out[-2], out[-1], x.shape[-1]))
    # no gradient reaches the parameters through their packed casts: the products' gradients above are theirs
    return d_x, None, [by_name[name] for name in PARAMETERS], None, None, None, *no_grads


mlla_block_fwd.register_autograd(_backward_op, setup_context=_setup_context)
