"""An MLLA block's training forward and backward as one autograd node, its backward written out by hand.

Run op by op, a block is ~40 autograd nodes, ~110 kernel launches per forward+backward (weight casts of
autocast, their gradients' casts back to float32, the drop-path arithmetic, separate adds) and the
checkpointing machinery of its recomputed branches; on the GPU hosts that Python work, not the GPU, sets the
speed (benchmarks/NOTES.md). Here one Function runs the same math with ~18 launches forward and ~40 backward:

- the block's Linear weights and biases are cast into one buffer (pack; the backbone casts every block's in one
  launch, :func:`packed_parameters`), in which the act_proj and in_proj weights form the single (2C, C) matrix of
  their joint product;
- the weight gradients come out of their products in float32 (what autocast's casts of bfloat16 gradients
  approximate), bias gradients are float32 sums;
- the SiLU gate, GELU (with its backward), and the residual adds with drop path are single launches that round
  where the PyTorch ops round (kernels/elementwise); the LayerNorm backwards add the residual's gradient;
- with ``recompute`` the first LayerNorm's output and the MLP branch (LayerNorm, fc1, GELU) are recomputed in
  the backward instead of stored, as the op-by-op block does with checkpointing.

The math, dtypes and rounding points are those of MLLABlock's op-by-op forward (the specification,
tests/test_models/test_mlla_block_function.py compares the two), which computes what the official block does.
Drop path takes per-sample keep masks (0. or 1.) drawn by the backbone; ``x.div(keep_prob) * keep`` as mmcv's
DropPath.
"""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mlla_dense.kernels.depthwise_conv.op import depthwise_conv_op
from mlla_dense.kernels.elementwise import (drop_path_grad, gelu, gelu_with_grad, pack, residual_add, silu_gate,
                                            silu_gate_backward)
from mlla_dense.kernels.elementwise.reference import pack_reference
from mlla_dense.kernels.layer_norm.op import layer_norm_op
from mlla_dense.kernels.linear_attention.op import linear_attention_op, linear_attention_with_tables_op
from mlla_dense.kernels.linear_attention.rope import build_rope_tables, table_dtype
from .parameter_paths import ParameterPaths
from .product_grads import bias_grads, weight_grad
from .ss2d import compute_dtype

# The block's parameters, in the order the Function takes them.
PARAMETERS = ('cpe1.weight', 'cpe1.bias', 'norm1.weight', 'norm1.bias', 'act_proj.weight', 'act_proj.bias',
              'in_proj.weight', 'in_proj.bias', 'dwc.weight', 'dwc.bias', 'attn.qk.weight', 'attn.qk.bias',
              'attn.lepe.weight', 'attn.lepe.bias', 'out_proj.weight', 'out_proj.bias', 'cpe2.weight', 'cpe2.bias',
              'norm2.weight', 'norm2.bias', 'mlp.fc1.weight', 'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias')
# Linear weights and biases cast into one buffer, act_proj before in_proj so that they form one matrix.
PACKED = ('act_proj.weight', 'in_proj.weight', 'act_proj.bias', 'in_proj.bias', 'attn.qk.weight', 'attn.qk.bias',
          'out_proj.weight', 'out_proj.bias', 'mlp.fc1.weight', 'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias')
_INDEX = {name: i for i, name in enumerate(PARAMETERS)}
_parameter_paths = ParameterPaths(PARAMETERS)
_PACKED_INDEX = [_INDEX[name] for name in PACKED]


class BlockConfig(NamedTuple):
    height: int
    width: int
    num_heads: int
    eps1: float
    eps2: float
    dtype: torch.dtype        # of the products (the autocast dtype under autocast)
    keep_prob: float          # of both drop paths (1.0 without)
    recompute: bool


class _Weights:
    """The block's parameters by role, with the Linear weights as views of their packed copy in the product dtype."""

    def __init__(self, params, packed: Tensor, c: int):
        p = dict(zip(PARAMETERS, params))
        self.p = p
        self.packed = packed
        sizes = [p[name].numel() for name in PACKED]
        views = dict(zip(PACKED, packed.split(sizes)))
        self.gate_in_w = packed[:2 * c * c].view(2 * c, c)
        self.gate_in_b = packed[2 * c * c:2 * c * c + 2 * c]
        self.qk_w = views['attn.qk.weight'].view(2 * c, c)
        self.qk_b = views['attn.qk.bias']
        self.out_w = views['out_proj.weight'].view(c, c)
        self.out_b = views['out_proj.bias']
        hidden = p['mlp.fc1.bias'].numel()
        self.fc1_w = views['mlp.fc1.weight'].view(hidden, c)
        self.fc1_b = views['mlp.fc1.bias']
        self.fc2_w = views['mlp.fc2.weight'].view(c, hidden)
        self.fc2_b = views['mlp.fc2.bias']


def _input_grad(dy: Tensor, w: Tensor) -> Tensor:
    """dy @ w over token rows, keeping the leading dims of dy."""
    return torch.matmul(dy, w)


def _to(t: Tensor, dtype) -> Tensor:
    return t if t.dtype == dtype else t.to(dtype)


def _norm(x, w, b, eps, dtype):
    return layer_norm_op.forward(x, w, b, eps, dtype)


def _mlp_input(w: _Weights, x3: Tensor, cfg: BlockConfig):
    """(LayerNorm output, its stats, fc1's output before GELU)."""
    ln2, stats2 = _norm(x3, w.p['norm2.weight'], w.p['norm2.bias'], cfg.eps2, cfg.dtype)
    return ln2, stats2, F.linear(ln2, w.fc1_w, w.fc1_b)


def _attention(tables, qk, u, lepe_weight, lepe_bias, cfg: BlockConfig):
    """(output, stats) of the linear attention, through its op (as the other kernels: one launch path, and
    profile_backbone.py times it): on ``tables``, or on its cached tables for None."""
    if tables is None:
        return linear_attention_op.forward(qk, u, lepe_weight, lepe_bias, cfg.height, cfg.width, cfg.num_heads)
    return linear_attention_with_tables_op.forward(qk, u, lepe_weight, lepe_bias, *tables, cfg.height, cfg.width,
                                                   cfg.num_heads)


def _attention_backward(tables, d_att, qk, u, lepe_weight, stats, cfg: BlockConfig):
    """(d qk, d v, d lepe weight, d lepe bias) of :func:`_attention`."""
    if tables is None:
        return linear_attention_op.backward(d_att, qk, u, lepe_weight, stats, cfg.height, cfg.width, cfg.num_heads)
    return linear_attention_with_tables_op.backward(d_att, qk, u, lepe_weight, *tables, stats, cfg.height, cfg.width,
                                                    cfg.num_heads)


def _forward(x: Tensor, cfg: BlockConfig, keep: Optional[Tensor], w: _Weights, saving: bool, tables=None):
    """The block's output, and what the backward needs when ``saving``; ``tables``: the linear attention's RoPE
    tables, or None for its cached ones."""
    p, c = w.p, x.shape[-1]
    h, wd = cfg.height, cfg.width
    x1, = depthwise_conv_op.forward(x, p['cpe1.weight'], p['cpe1.bias'], h, wd, True, False)
    ln1, stats1 = _norm(x1, p['norm1.weight'], p['norm1.bias'], cfg.eps1, cfg.dtype)
    gi = F.linear(ln1, w.gate_in_w, w.gate_in_b)
    gate, inp = gi[..., :c], gi[..., c:]
    u, = depthwise_conv_op.forward(inp, p['dwc.weight'], p['dwc.bias'], h, wd, False, True)
    qk = F.linear(u, w.qk_w, w.qk_b)
    att, la_stats = _attention(tables, qk, u, p['attn.lepe.weight'], p['attn.lepe.bias'], cfg)
    gated = silu_gate(att, gate)
    o = F.linear(gated, w.out_w, w.out_b)
    x2 = residual_add(x1, o, None if keep is None else keep[0], cfg.keep_prob)
    x3, = depthwise_conv_op.forward(x2, p['cpe2.weight'], p['cpe2.bias'], h, wd, True, False)
    ln2, stats2, a = _mlp_input(w, x3, cfg)
    hidden = gelu(a)
    m = F.linear(hidden, w.fc2_w, w.fc2_b)
    out = residual_add(x3, m, None if keep is None else keep[1], cfg.keep_prob)
    if not saving:
        return out, None
    stored = (None,) * 5 if cfg.recompute else (ln1, stats1, ln2, stats2, a)
    return out, (x, x1, gi, u, qk, la_stats, att, gated, x2, x3) + stored


def _branch_grad(d: Tensor, keep: Optional[Tensor], cfg: BlockConfig) -> Tuple[Tensor, Optional[Tensor]]:
    """(the gradient of a residual branch's output from the gradient of the sum, the partials of its column sums
    (its bias gradient, see kernels/elementwise) or None where no kernel computes it)."""
    if keep is None:
        return _to(d, cfg.dtype), None
    return drop_path_grad(d, keep, cfg.keep_prob, cfg.dtype, column_sums=True)


def _backward(d_out: Tensor, cfg: BlockConfig, keep, w: _Weights, saved, tables=None) -> Tuple[Tensor, dict]:
    """(d x, gradients by parameter name, act_proj's and in_proj's as 'gate_in.weight' and 'gate_in.bias' of
    their joint product)."""
    x, x1, gi, u, qk, la_stats, att, gated, x2, x3, ln1, stats1, ln2, stats2, a = saved
    p, c = w.p, x.shape[-1]
    h, wd = cfg.height, cfg.width
    grads = {}
    # MLP branch: out = x3 + drop_path(fc2(gelu(fc1(norm2(x3)))))
    d_m, m_sums = _branch_grad(d_out, None if keep is None else keep[1], cfg)
    if ln2 is None:
        ln2, stats2, a = _mlp_input(w, x3, cfg)
    d_hidden = _input_grad(d_m, w.fc2_w)
    hidden, d_a, a_sums = gelu_with_grad(a, d_hidden, column_sums=True)
    grads['mlp.fc2.bias'], grads['mlp.fc1.bias'] = bias_grads((d_m, m_sums), (d_a, a_sums))
    grads['mlp.fc2.weight'], grads['mlp.fc1.weight'] = weight_grad(d_m, hidden), weight_grad(d_a, ln2)
    d_ln2 = _input_grad(d_a, w.fc1_w)
    d_x3, grads['norm2.weight'], grads['norm2.bias'] = layer_norm_op.backward(d_ln2, x3, p['norm2.weight'], stats2,
                                                                              d_out)
    d_x2, grads['cpe2.weight'], grads['cpe2.bias'] = depthwise_conv_op.backward(
        d_x3, x2, p['cpe2.weight'], p['cpe2.bias'], h, wd, True, False)
    # attention branch: x2 = x1 + drop_path(out_proj(attn(silu(dwc(inp))) * silu(gate)))
    d_o, o_sums = _branch_grad(d_x2, None if keep is None else keep[0], cfg)
    grads['out_proj.weight'] = weight_grad(d_o, gated)
    grads['out_proj.bias'], = bias_grads((d_o, o_sums))
    d_gated = _input_grad(d_o, w.out_w)
    d_gi = torch.empty(gi.shape, dtype=gi.dtype, device=gi.device)
    d_att = torch.empty(att.shape, dtype=att.dtype, device=att.device)
    silu_gate_backward(d_gated, att, gi[..., :c], d_att, d_gi[..., :c])
    d_qk, d_u, grads['attn.lepe.weight'], grads['attn.lepe.bias'] = _attention_backward(
        tables, d_att, qk, u, p['attn.lepe.weight'], la_stats, cfg)
    grads['attn.qk.weight'] = weight_grad(d_qk, u)
    d_u = d_u.view(-1, c).addmm_(d_qk.view(-1, 2 * c), w.qk_w).view(u.shape)
    grads['dwc.weight'], grads['dwc.bias'] = depthwise_conv_op.backward_into(
        d_gi[..., c:], d_u, gi[..., c:], p['dwc.weight'], p['dwc.bias'], h, wd, False, True)
    if ln1 is None:
        ln1, stats1 = _norm(x1, p['norm1.weight'], p['norm1.bias'], cfg.eps1, cfg.dtype)
    grads['gate_in.weight'] = weight_grad(d_gi, ln1)
    grads['attn.qk.bias'], grads['gate_in.bias'] = bias_grads((d_qk, None), (d_gi, None))
    d_ln1 = _input_grad(d_gi, w.gate_in_w)
    d_x1, grads['norm1.weight'], grads['norm1.bias'] = layer_norm_op.backward(d_ln1, x1, p['norm1.weight'], stats1,
                                                                              d_x2)
    d_x, grads['cpe1.weight'], grads['cpe1.bias'] = depthwise_conv_op.backward(
        d_x1, x, p['cpe1.weight'], p['cpe1.bias'], h, wd, True, False)
    return d_x, grads


def split_gate_in_grads(d_weight: Tensor, d_bias: Tensor, c: int) -> dict:
    """act_proj's and in_proj's gradients by name, from those of their joint (2C, C) product."""
    return {'act_proj.weight': d_weight[:c], 'in_proj.weight': d_weight[c:], 'act_proj.bias': d_bias[:c],
            'in_proj.bias': d_bias[c:]}


class MLLABlockFunction(torch.autograd.Function):
    """``apply(x, cfg, keep, packed, *params)``: the block on tokens x (B, N, C) with ``params`` in PARAMETERS
    order; ``packed``: their PACKED cast (:func:`packed_parameters`), or None to cast them here."""

    @staticmethod
    def forward(ctx, x, cfg: BlockConfig, keep: Optional[Tensor], packed: Optional[Tensor], *params):
        w = _Weights(params, _packed(params, cfg.dtype) if packed is None else packed, x.shape[-1])
        with torch.autocast(x.device.type, enabled=False):
            out, saved = _forward(x, cfg, keep, w, saving=True)
        ctx.cfg, ctx.keep, ctx.weights = cfg, keep, w
        # the weight views stay on ctx (rebuilding them is host time; they hold only the packed weight casts, also
        # under saved-tensor hooks); the parameters are saved for autograd's check that nothing changed them in
        # place before the backward
        ctx.save_for_backward(w.packed, *params, *(t for t in saved if t is not None))
        ctx.stored = [t is not None for t in saved]
        return out

    @staticmethod
    def backward(ctx, d_out):
        rest = iter(ctx.saved_tensors[1 + len(PARAMETERS):])
        saved = [next(rest) if stored else None for stored in ctx.stored]
        d_x, grads = _backward(d_out.contiguous(), ctx.cfg, ctx.keep, ctx.weights, saved)
        grads.update(split_gate_in_grads(grads.pop('gate_in.weight'), grads.pop('gate_in.bias'), d_x.shape[-1]))
        needed = ctx.needs_input_grad[4:]
        return (d_x, None, None, None) + tuple(grads[name] if need else None for name, need in zip(PARAMETERS, needed))


def block_parameters(block) -> list:
    """The block's parameters in PARAMETERS order (read from the module at each call: CUDA-graph captures swap in
    aliases of them)."""
    return _parameter_paths(block)


def _packed(params, dtype) -> Tensor:
    return pack([params[i] for i in _PACKED_INDEX], dtype)


def packed_parameters(block, batch: int) -> list:
    """The block's PACKED parameters, which its Function casts (the backbone casts every block's in one launch,
    PretrainedBackbone._packed_weights); the same for any ``batch``: every sample reads the same weights."""
    params = block_parameters(block)
    return [params[i] for i in _PACKED_INDEX]


def fused_dtypes(x: Tensor) -> bool:
    """Whether the tokens are in the dtype the block computes in (the autocast dtype under autocast): how MLLA's
    stages run in float32 and in mixed-precision training, and the configuration validated on the GPU; other
    combinations keep the op-by-op path (benchmarks/NOTES.md says why)."""
    kind = x.device.type
    return not torch.is_autocast_enabled(kind) or torch.get_autocast_dtype(kind) == x.dtype


def compiled_op_inputs(x: Tensor, params, cfg: BlockConfig):
    """(packed product weights, RoPE cos, RoPE sin) that mlla_block_op.py's ops take, computed by the graph
    torch.compile traces (pack's reference in groups, :func:`_pack_in_groups`; the tables as the linear attention
    reads them)."""
    packed = _pack_in_groups([params[i] for i in _PACKED_INDEX], cfg.dtype)
    cos, sin = build_rope_tables(cfg.height, cfg.width, x.shape[-1], x.device, table_dtype(cfg.dtype))
    return packed, cos, sin


def _pack_in_groups(pieces, dtype) -> Tensor:
    """pack_reference(pieces, dtype) as a cat of packs of at most Inductor's ``max_pointwise_cat_inputs`` pieces:
    Inductor compiles a cat of more inputs to one copy kernel per input, 12 launches a block for its weights, and
    a smaller one to a single kernel (benchmarks/NOTES.md)."""
    from torch._inductor import config
    size = getattr(config, 'max_pointwise_cat_inputs', 8)
    return torch.cat([pack_reference(pieces[i:i + size], dtype) for i in range(0, len(pieces), size)])


def mlla_block(block, x: Tensor, hw_shape, keep: Optional[Tensor], keep_prob: float,
               packed: Optional[Tensor] = None) -> Tensor:
    """``block`` (an MLLABlock) on tokens x through :class:`MLLABlockFunction` (the eager path on the GPU), or
    through the custom ops of mlla_block_op.py while torch.compile traces (``compile_fused_blocks``); ``keep``
    (2, B): the drop-path masks of its two branches, or None; ``packed``: its weights' cast from
    the backbone, or None to cast them here."""
    kind = x.device.type
    dtype = compute_dtype(x)
    cfg = BlockConfig(hw_shape[0], hw_shape[1], block.attn.num_heads, block.norm1.eps, block.norm2.eps, dtype,
                      keep_prob, block.recompute)
    params = block_parameters(block)
    if torch.compiler.is_compiling():
        inputs = compiled_op_inputs(x, params, cfg)
        return torch.ops.mlla_dense.mlla_block_fwd(x, keep, params, *inputs, *cfg, torch.is_grad_enabled())[0]
    if torch.is_grad_enabled():
        return MLLABlockFunction.apply(x, cfg, keep, packed, *params)
    w = _Weights(params, _packed(params, dtype) if packed is None else packed, x.shape[-1])
    with torch.autocast(kind, enabled=False):
        return _forward(x, cfg, keep, w, saving=False)[0]
