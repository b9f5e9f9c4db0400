"""A VSS block's training forward and backward as one autograd node, its backward written out by hand.

Run op by op (VSSBlock.forward_ops), a VMamba block is some thirty autograd nodes and ~110 kernel launches per
forward+backward, and on the GPU hosts that Python work, not the GPU, sets the speed (benchmarks/NOTES.md). Here
one Function runs the same math: the block's product weights are cast into one buffer (the backbone casts every
block's in one launch, :func:`packed_parameters`); LayerNorms, the depthwise conv + SiLU, the selective scan, the
transposes between the token map and its row and column sequences, GELU and the drop-path residual adds run as
single Triton launches; weight gradients come out of their products in float32, and the LayerNorm backwards add
the residual's gradient.

Token layout (B, H, W, C). SS2D's two sequences ``xs`` (B, 2, D, L) are the map's rows and columns; path
k = 2 * reversed + sequence projects ``xs[:, sequence]`` to (dt, B, C) and the four path outputs are summed back on
the grid (models/layers/ss2d.py). The op-by-op block is the specification:
tests/test_models/test_vss_block_function.py compares the two.
"""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mlla_dense.kernels.depthwise_conv.op import depthwise_conv_op
from mlla_dense.kernels.elementwise import drop_path_grad, gelu, gelu_with_grad, pack, residual_add
from mlla_dense.kernels.elementwise.block_matrix import BlockMatrix
from mlla_dense.kernels.grid_sequences import grid_to_sequences, sequences_to_grid
from mlla_dense.kernels.layer_norm.op import layer_norm_op
from mlla_dense.kernels.selective_scan.op import selective_scan_op
from .parameter_paths import ParameterPaths
from .product_grads import bias_grads, weight_grad
from .ss2d import compute_dtype

# The block's parameters, in the order the Function takes them.
PARAMETERS = ('norm.weight', 'norm.bias', 'op.in_proj.weight', 'op.conv2d.weight', 'op.x_proj_weight',
              'op.dt_projs_weight', 'op.dt_projs_bias', 'op.A_logs', 'op.Ds', 'op.out_norm.weight',
              'op.out_norm.bias', 'op.out_proj.weight', 'norm2.weight', 'norm2.bias', 'mlp.fc1.weight',
              'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias')
# Weights the products read, cast into one buffer in the compute dtype. x_proj_weight goes in as a block matrix
# (4 * rn2, 2 * D): path k's projection in the columns of sequence k % 2, zeros in the other, so that one product
# over both sequences gives the paths in path order. dt_projs_weight goes in once per sample, for a product over
# (sample, path) pairs.
PACKED = ('op.in_proj.weight', 'op.x_proj_weight', 'op.dt_projs_weight', 'op.out_proj.weight', 'mlp.fc1.weight',
          'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias')
_INDEX = {name: i for i, name in enumerate(PARAMETERS)}
_parameter_paths = ParameterPaths(PARAMETERS)
_PACKED_INDEX = [_INDEX[name] for name in PACKED]
_X_PROJ = _INDEX['op.x_proj_weight']
_DT_PROJS = _INDEX['op.dt_projs_weight']


class BlockConfig(NamedTuple):
    eps: float
    eps_out: float
    eps2: float
    dtype: torch.dtype        # of the products (the autocast dtype under autocast)
    keep_prob: float          # of both drop paths (1.0 without)


class _Weights:
    """The parameters by name, the packed product weights (for ``batch`` samples) as views shaped for their
    products, and the state matrix a = -exp(A_logs)."""

    def __init__(self, params, packed: Tensor, a: Optional[Tensor], batch: int):
        p = dict(zip(PARAMETERS, params))
        self.p = p
        self.packed = packed
        self.a = -torch.exp(p['op.A_logs']) if a is None else a
        k, rn2, d = p['op.x_proj_weight'].shape
        sizes = [p[name].numel() for name in PACKED]
        sizes[PACKED.index('op.x_proj_weight')] *= 2  # the block matrix' zeros
        sizes[PACKED.index('op.dt_projs_weight')] *= batch
        views = dict(zip(PACKED, packed.split(sizes)))
        self.in_w = views['op.in_proj.weight'].view(p['op.in_proj.weight'].shape)
        self.proj = views['op.x_proj_weight'].view(k * rn2, 2 * d)  # rows: paths; columns: the two sequences
        self.dt_w = views['op.dt_projs_weight'].view(batch * k, d, -1)  # per (sample, path)
        self.out_w = views['op.out_proj.weight'].view(p['op.out_proj.weight'].shape)
        self.fc1_w = views['mlp.fc1.weight'].view(p['mlp.fc1.weight'].shape)
        self.fc1_b = views['mlp.fc1.bias']
        self.fc2_w = views['mlp.fc2.weight'].view(p['mlp.fc2.weight'].shape)
        self.fc2_b = views['mlp.fc2.bias']
        self.rn2 = rn2
        self.n_state = p['op.A_logs'].shape[1]
        self.rank = rn2 - 2 * self.n_state


def _batched_weight_grad(dy: Tensor, x: Tensor) -> Tensor:
    """sum over batch and positions of dy x^T: (B, S, O, L), (B, S, I, L) -> (S, O, I) in float32, the products
    per sample in the inputs' dtype as autocast's backward computes them (no copies of the (B, S, ., L) inputs:
    their (B, S) dims merge into one batch dim)."""
    b, s, o, length = dy.shape
    products = torch.bmm(dy.reshape(b * s, o, length), x.reshape(b * s, -1, length).transpose(1, 2))
    return products.view(b, s, o, -1).sum(0, dtype=torch.float32)


def _forward(x: Tensor, cfg: BlockConfig, keep: Optional[Tensor], w: _Weights, saving: bool):
    """The block's output, and what the backward needs when ``saving``."""
    p = w.p
    b, h, wd, c = x.shape
    length = h * wd
    ln1, stats1 = layer_norm_op.forward(x, p['norm.weight'], p['norm.bias'], cfg.eps, cfg.dtype)
    z = F.linear(ln1, w.in_w)
    d = z.shape[-1]
    conv_bias = _zero_bias(d, p['op.conv2d.weight'])
    u, = depthwise_conv_op.forward(z.view(b, length, d), p['op.conv2d.weight'], conv_bias, h, wd, False, True)
    xs = grid_to_sequences(u.view(b, h, wd, d))
    paths = torch.bmm(w.proj.expand(b, -1, -1), xs.view(b, 2 * d, length)).view(b, 4, w.rn2, length)
    dts, bs, cs = torch.split(paths, [w.rank, w.n_state, w.n_state], dim=2)
    delta = torch.bmm(w.dt_w, dts.reshape(b * 4, w.rank, length)).view(b, 4 * d, length)
    a = w.a
    bias = p['op.dt_projs_bias'].view(-1)
    ys, states = selective_scan_op.forward(xs, delta, a, bs, cs, p['op.Ds'], bias, True, 2)
    y = sequences_to_grid(ys.view(b, 4, d, length), h, wd)
    yn, stats_out = layer_norm_op.forward(y, p['op.out_norm.weight'], p['op.out_norm.bias'], cfg.eps_out, cfg.dtype)
    o = F.linear(yn, w.out_w)
    keep_attn, keep_mlp = (None, None) if keep is None else keep
    x2 = residual_add(x.view(b, length, c), o.view(b, length, c), keep_attn, cfg.keep_prob).view(x.shape)
    ln2, stats2 = layer_norm_op.forward(x2, p['norm2.weight'], p['norm2.bias'], cfg.eps2, cfg.dtype)
    pre = F.linear(ln2, w.fc1_w, w.fc1_b)
    m = F.linear(gelu(pre), w.fc2_w, w.fc2_b)
    out = residual_add(x2.view(b, length, c), m.view(b, length, c), keep_mlp, cfg.keep_prob).view(x.shape)
    if not saving:
        return out, None
    return out, (x, ln1, stats1, z, conv_bias, xs, paths, delta, states, y, yn, stats_out, x2, ln2, stats2, pre)


def _branch_grad(d: Tensor, keep: Optional[Tensor], cfg: BlockConfig,
                 column_sums: bool) -> Tuple[Tensor, Optional[Tensor]]:
    """(the gradient of a residual branch's output (B, L, C) from the gradient of the sum, with ``column_sums``
    the partials of its column sums (see kernels/elementwise), None where not asked or no kernel computes them)."""
    if keep is None:
        return (d if d.dtype == cfg.dtype else d.to(cfg.dtype)), None
    if column_sums:
        return drop_path_grad(d, keep, cfg.keep_prob, cfg.dtype, column_sums=True)
    return drop_path_grad(d, keep, cfg.keep_prob, cfg.dtype), None


def _backward(d_out: Tensor, cfg: BlockConfig, keep, w: _Weights, saved):
    """(d x, gradients by parameter name)."""
    x, ln1, stats1, z, conv_bias, xs, paths, delta, states, y, yn, stats_out, x2, ln2, stats2, pre = saved
    p, a = w.p, w.a
    b, h, wd, c = x.shape
    length = h * wd
    d = z.shape[-1]
    keep_attn, keep_mlp = (None, None) if keep is None else keep
    grads = {}
    # MLP branch: out = x2 + drop_path(fc2(gelu(fc1(norm2(x2)))))
    d_m, m_sums = _branch_grad(d_out.view(b, length, c), keep_mlp, cfg, column_sums=True)
    hidden, d_pre, pre_sums = gelu_with_grad(pre, torch.matmul(d_m.view(pre.shape[:-1] + (c,)), w.fc2_w),
                                             column_sums=True)
    grads['mlp.fc2.bias'], grads['mlp.fc1.bias'] = bias_grads((d_m, m_sums), (d_pre, pre_sums))
    grads['mlp.fc2.weight'], grads['mlp.fc1.weight'] = weight_grad(d_m, hidden), weight_grad(d_pre, ln2)
    d_x2, grads['norm2.weight'], grads['norm2.bias'] = layer_norm_op.backward(
        torch.matmul(d_pre, w.fc1_w), x2, p['norm2.weight'], stats2, d_out)
    # SS2D branch: x2 = x + drop_path(out_proj(out_norm(ss2d(silu(conv(in_proj(norm(x))))))))
    d_o, _ = _branch_grad(d_x2.view(b, length, c), keep_attn, cfg, column_sums=False)  # out_proj: no bias
    grads['op.out_proj.weight'] = weight_grad(d_o, yn)
    d_y, grads['op.out_norm.weight'], grads['op.out_norm.bias'] = layer_norm_op.backward(
        torch.matmul(d_o, w.out_w).view(yn.shape), y, p['op.out_norm.weight'], stats_out)
    d_seqs = grid_to_sequences(d_y)  # (B, 2, D, L) float32: the gradient of the two paths on each sequence
    bs, cs = torch.split(paths, [w.rank, w.n_state, w.n_state], dim=2)[1:]
    d_xs, d_delta, d_a, d_bs, d_cs, d_ds, d_bias = selective_scan_op.backward(
        d_seqs, xs, delta, a, bs, cs, p['op.Ds'], p['op.dt_projs_bias'].view(-1), states, True, 2)
    grads['op.A_logs'] = d_a * a
    grads['op.Ds'] = d_ds
    grads['op.dt_projs_bias'] = d_bias.view(p['op.dt_projs_bias'].shape)
    dts = paths[:, :, :w.rank]
    d_delta = d_delta.view(b, 4, d, length).to(cfg.dtype)
    grads['op.dt_projs_weight'] = _batched_weight_grad(d_delta, dts)
    d_dts = torch.bmm(w.dt_w.transpose(1, 2), d_delta.view(b * 4, d, length)).view(b, 4, w.rank, length)
    d_paths = torch.cat([d_dts, d_bs.to(cfg.dtype), d_cs.to(cfg.dtype)], dim=2).view(b, 4 * w.rn2, length)
    # x_proj's gradient: the diagonal blocks of the block matrix' gradient (path k, sequence k % 2), summed over
    # the batch; path k = 2 * reversed + sequence
    full = torch.bmm(d_paths, xs.view(b, 2 * d, length).transpose(1, 2)).view(b, 2, 2, w.rn2, 2, d)
    d_x_proj = grads['op.x_proj_weight'] = d_paths.new_empty((4, w.rn2, d), dtype=torch.float32)
    torch.sum(full.diagonal(dim1=2, dim2=4), 0, dtype=torch.float32,
              out=d_x_proj.view(2, 2, w.rn2, d).permute(0, 2, 3, 1))
    # xs' gradient from the projections, added in xs' dtype as autograd sums them
    d_xs.view(b, 2 * d, length).baddbmm_(w.proj.t().expand(b, -1, -1), d_paths)
    d_u = sequences_to_grid(d_xs, h, wd).view(b, length, d)
    d_z, grads['op.conv2d.weight'], _ = depthwise_conv_op.backward(d_u, z.view(b, length, d),
                                                                    p['op.conv2d.weight'], conv_bias, h, wd, False,
                                                                    True)
    grads['op.in_proj.weight'] = weight_grad(d_z, ln1)
    d_x, grads['norm.weight'], grads['norm.bias'] = layer_norm_op.backward(
        torch.matmul(d_z, w.in_w).view(ln1.shape), x, p['norm.weight'], stats1, d_x2)
    return d_x, grads


class VSSBlockFunction(torch.autograd.Function):
    """``apply(x, cfg, keep, packed, a, *params)``: the block on tokens x (B, H, W, C) with ``params`` in
    PARAMETERS order; ``packed``: their PACKED cast (:func:`packed_parameters`), ``a``: -exp(A_logs) (the backbone
    makes every block's in one launch), each None to make them here."""

    @staticmethod
    def forward(ctx, x, cfg: BlockConfig, keep: Optional[Tensor], packed: Optional[Tensor], a: Optional[Tensor],
                *params):
        w = _Weights(params, _packed(params, cfg.dtype, x.shape[0]) if packed is None else packed, a, x.shape[0])
        with torch.autocast(x.device.type, enabled=False):
            out, saved = _forward(x, cfg, keep, w, saving=True)
        ctx.cfg, ctx.keep, ctx.weights = cfg, keep, w
        # the weight views stay on ctx (rebuilding them is host time; they hold only the packed weight casts and
        # the state matrix, also under saved-tensor hooks); the parameters are saved for autograd's check that
        # nothing changed them in place before the backward
        ctx.save_for_backward(w.packed, *params, *saved)
        return out

    @staticmethod
    def backward(ctx, d_out):
        saved = ctx.saved_tensors[1 + len(PARAMETERS):]
        with torch.autocast(d_out.device.type, enabled=False):
            d_x, grads = _backward(d_out.contiguous(), ctx.cfg, ctx.keep, ctx.weights, saved)
        needed = ctx.needs_input_grad[5:]
        return (d_x, None, None, None, None) + tuple(grads[name] if need else None
                                                     for name, need in zip(PARAMETERS, needed))


def block_parameters(block) -> list:
    """The block's parameters in PARAMETERS order (read from the module at each call: CUDA-graph captures swap in
    aliases of them)."""
    return _parameter_paths(block)


def _packed_sources(params, batch: int) -> list:
    """The pieces of the packed buffer for ``batch`` samples: the PACKED parameters, x_proj_weight as the block
    matrix and dt_projs_weight once per sample."""
    sources = []
    for i in _PACKED_INDEX:
        if i == _X_PROJ:
            paths = params[i]
            sources.append(BlockMatrix([[paths[k], None] if k % 2 == 0 else [None, paths[k]] for k in range(4)]))
        else:
            sources += [params[i]] * (batch if i == _DT_PROJS else 1)
    return sources


def _packed(params, dtype, batch: int) -> Tensor:
    return pack(_packed_sources(params, batch), dtype)


def packed_parameters(block, batch: int) -> list:
    """What the block's Function casts into its packed buffer for ``batch`` samples (the backbone casts every
    block's in one launch, PretrainedBackbone._packed_weights)."""
    return _packed_sources(block_parameters(block), batch)


_zero_biases = {}


def _zero_bias(size: int, like: Tensor) -> Tensor:
    """Zeros for the depthwise conv's bias (VMamba's conv has none), kept per size, dtype and device instead of a
    memset per call; made afresh, not kept, while a CUDA graph is captured (its memory exists only in replays)."""
    key = (size, like.dtype, like.device)
    zeros = _zero_biases.get(key)
    if zeros is None:
        zeros = torch.zeros(size, dtype=like.dtype, device=like.device)
        if not (zeros.is_cuda and torch.cuda.is_current_stream_capturing()):
            _zero_biases[key] = zeros
    return zeros


def vss_block(block, x: Tensor, keep: Optional[Tensor], keep_prob: float, packed: Optional[Tensor] = None,
              a: Optional[Tensor] = None) -> Tensor:
    """``block`` (a VSSBlock) on tokens x (B, H, W, C) through :class:`VSSBlockFunction`; ``keep`` (2, B): the
    drop-path masks of its two branches, or None; ``packed`` and ``a``: its weights' cast and its state matrix
    from the backbone, or None to make them here."""
    dtype = compute_dtype(x)
    cfg = BlockConfig(block.norm.eps, block.op.out_norm.eps, block.norm2.eps, dtype, keep_prob)
    params = block_parameters(block)
    x = x.contiguous()
    if torch.is_grad_enabled():
        return VSSBlockFunction.apply(x, cfg, keep, packed, a, *params)
    w = _Weights(params, _packed(params, dtype, x.shape[0]) if packed is None else packed, a, x.shape[0])
    with torch.autocast(x.device.type, enabled=False):
        return _forward(x, cfg, keep, w, saving=False)[0]
