"""MLLA backbone (Mamba-Like Linear Attention, Han et al., NeurIPS 2024) for mmdet and mmseg.

Numerically the official downstream backbone (LeapLabTHU/MLLA, downstream/detection/mmdet/models/
backbones/mlla.py) with the same parameter names, so official ImageNet and detection/segmentation
checkpoints load unchanged. Differences: RoPE tables are cached per grid instead of rebuilt per call (and
the unused fixed-size ``rope.rotations`` buffers are gone), the linear attention, the blocks' depthwise convs
and LayerNorms run as Triton kernels on CUDA, the stem runs channels-last, the wide activations are recomputed
in the backward (``recompute_wide``), and OpenMMLab conventions are added (arch presets, frozen_stages,
norm_eval, with_cp, init_cfg).
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from torch import nn

from mlla_dense.kernels.backend import use_triton
from mlla_dense.kernels.depthwise_conv import depthwise_conv
from mlla_dense.kernels.layer_norm import layer_norm
from mlla_dense.kernels.linear_attention.rope import build_rope_tables, table_dtype
from mlla_dense.registry import register_backbone
from .pretrained_backbone import PretrainedBackbone, fused_block_masks
from ..layers.autocast_layer_norm import autocast_layer_norm
from ..layers.cast_products import cast_all, cast_product
from ..layers.linear_attention import LinearAttention
from ..layers.mlla_stem import PatchMerging, Stem
from ..layers import mlla_block_op  # noqa: F401  (the fused block's ops for torch.compile)
from ..layers.mlla_block_function import fused_dtypes, mlla_block, packed_parameters
from ..layers.ss2d import compute_dtype
from ..layers.mlp import Mlp
from ..layers.recompute import recomputed
from ..layers.silu_gate import silu_gate

ARCH_SETTINGS = {
    'nano': dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8)),  # for the CPU demo, not released
    'tiny': dict(embed_dim=64, depths=(2, 4, 8, 4), num_heads=(2, 4, 8, 16)),
    'small': dict(embed_dim=64, depths=(3, 6, 21, 6), num_heads=(2, 4, 8, 16)),
    'base': dict(embed_dim=96, depths=(3, 6, 21, 6), num_heads=(3, 6, 12, 24)),
}

# Keys of official checkpoints that the dense backbone does not use: the classifier's final norm and head,
# and the fixed-resolution RoPE buffers (tables are computed per input size here).
IGNORED_CHECKPOINT_KEYS = (r'head\..*', r'norm\.(weight|bias)', r'.*\.attn\.rope\.rotations')
NEW_LAYERS = (r'norm\d\..*',)


class MLLABlock(nn.Module):
    """x += cpe1(x); x += out_proj(attn(SiLU(dwc(in_proj(LN(x))))) * SiLU(act_proj(LN(x)))); x += cpe2(x);
    x += MLP(LN(x)). cpe1, cpe2 and dwc are 3x3 depthwise convs over the token grid, run on the tokens in
    place (no permute to channels-first) with their residual or SiLU fused (:func:`depthwise_conv`); the gate
    multiply stores its inputs but not SiLU(gate) (:func:`silu_gate`); act_proj and in_proj run as one product;
    the LayerNorms write the dtype their Linears consume (:func:`layer_norm`).

    With the Triton kernels in eager mode (no dropout, tokens in the dtype the block computes in) the block runs
    as one autograd node with a hand-written backward (:func:`~mlla_dense.models.layers.mlla_block_function.
    mlla_block`), the same math in ~60 instead of ~110 launches per forward+backward; the op-by-op forward below
    is its specification and the path otherwise: on CPU, under torch.compile (which fuses the elementwise steps
    itself), and for float32 tokens under autocast. Compiled, it takes from the backbone what would otherwise be
    made per block, each a kernel launch or more: its products' weights cast once for all blocks
    (cast_products.py), its drop-path masks drawn and cast once, and its stage's RoPE tables.

    With ``recompute`` the MLP branch keeps only its input for the backward and runs its forward again there:
    its LayerNorm output and the 4x wider hidden activations (before and after GELU), 9 of the block's 22
    token-sized saved tensors, are not stored (benchmarks/NOTES.md: memory and time); likewise norm1's output,
    which the act_proj/in_proj product would store (norm1 keeps its input anyway).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4., qkv_bias: bool = True,
                 drop: float = 0., drop_path: float = 0., recompute: bool = False):
        super().__init__()
        self.recompute = recompute
        self.compile_fused = False  # under torch.compile: the fused block's custom ops (MLLA's compile_fused_blocks)
        self.cpe1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.in_proj = nn.Linear(dim, dim)
        self.act_proj = nn.Linear(dim, dim)
        self.dwc = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.attn = LinearAttention(dim, num_heads, qkv_bias=qkv_bias)
        self.out_proj = nn.Linear(dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.cpe2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def fused(self, x: torch.Tensor) -> bool:
        """Whether the block runs as one :class:`MLLABlockFunction` on these tokens (under torch.compile only with
        ``compile_fused``, as the two custom ops of mlla_block_op.py)."""
        return (use_triton(x) and (self.compile_fused or not torch.compiler.is_compiling()) and self.mlp.drop.p == 0
                and fused_dtypes(x))

    def forward(self, x: torch.Tensor, hw_shape, keep: Optional[torch.Tensor] = None,
                packed: Optional[torch.Tensor] = None, casts: Optional[dict] = None,
                rope: Optional[tuple] = None) -> torch.Tensor:
        """x: (B, H*W, C) tokens. ``keep`` (2, B), per-sample drop-path masks (0. or 1.) of the two branches drawn
        by the backbone for all blocks at once; drawn here when needed and not given. ``packed``: the fused
        block's weight cast, made by the backbone for all blocks at once, or None. Op by op under torch.compile,
        made once for all blocks instead of in each: ``casts``, the products' weight casts (:meth:`product_weights`),
        and ``rope``, the linear attention's RoPE tables of the stage, or None."""
        if self.fused(x):
            return mlla_block(self, x, hw_shape, *fused_block_masks(self, x, keep), packed)
        return self.forward_ops(x, hw_shape, casts, keep, rope)

    def forward_ops(self, x: torch.Tensor, hw_shape, casts: Optional[dict] = None,
                    keep: Optional[torch.Tensor] = None, rope: Optional[tuple] = None) -> torch.Tensor:
        """The block op by op; ``casts``, ``keep`` and ``rope`` as in :meth:`forward` (drop path by the DropPath
        modules where ``keep`` is None)."""
        x = depthwise_conv(x, hw_shape, self.cpe1.weight, self.cpe1.bias, residual=True)
        shortcut = x
        gate, x = recomputed(self._gate_and_input, x, casts, enabled=self.recompute, random=False)
        x = depthwise_conv(x, hw_shape, self.dwc.weight, self.dwc.bias, activation='silu')
        x = self.attn(x, hw_shape, qk=None if casts is None else self._product('qk', x, casts), rope=rope)
        x = shortcut + self._drop_path(self._product('out', silu_gate(x, gate), casts), keep, 0)
        x = depthwise_conv(x, hw_shape, self.cpe2.weight, self.cpe2.bias, residual=True)
        return x + self._drop_path(recomputed(self._mlp_branch, x, casts, enabled=self.recompute), keep, 1)

    def _drop_path(self, branch: torch.Tensor, keep: Optional[torch.Tensor], index: int) -> torch.Tensor:
        """Drop path of branch ``index`` (0: attention, 1: MLP): with the masks ``keep`` where given (mmcv
        DropPath's arithmetic on them), else by the DropPath module, which draws its own."""
        if keep is None or not isinstance(self.drop_path, DropPath) or not self.training:
            return self.drop_path(branch)
        return branch.div(1.0 - self.drop_path.drop_prob) * keep[index].to(branch.dtype).view(-1, 1, 1)

    def _gate_and_input(self, x: torch.Tensor, casts: Optional[dict]):
        """(act_proj(LN(x)), in_proj(LN(x))) as views of one product: one GEMM, and its input (cast once under
        autocast) is stored once for the backward instead of twice."""
        return self._product('gate', self._norm(self.norm1, x), casts).chunk(2, dim=-1)

    def _mlp_branch(self, x: torch.Tensor, casts: Optional[dict]) -> torch.Tensor:
        x = self._norm(self.norm2, x)
        if casts is None:
            return self.mlp(x)
        return self.mlp.drop(self._product('fc2', self.mlp.drop(self.mlp.act(self._product('fc1', x, casts))),
                                           casts))

    # the Linears of each product the block computes, whose rows stack when there are several (act_proj and
    # in_proj form the gate's one product)
    PRODUCTS = dict(gate=('act_proj', 'in_proj'), qk=('attn.qk',), out=('out_proj',), fc1=('mlp.fc1',),
                    fc2=('mlp.fc2',))

    def product_weights(self) -> dict:
        """{product: (weights, biases)} of every product in PRODUCTS."""
        return {name: self._product_weights(name) for name in self.PRODUCTS}

    def _product_weights(self, name: str):
        linears = [self.get_submodule(path) for path in self.PRODUCTS[name]]
        return [m.weight for m in linears], [m.bias for m in linears]

    def _product(self, name: str, x: torch.Tensor, casts: Optional[dict]) -> torch.Tensor:
        """Product ``name`` of PRODUCTS on x: on its cast weights from ``casts`` (name -> (weight cast, bias
        cast)) when given, else on the Linears' weights (autocast casts them)."""
        weights, biases = self._product_weights(name)
        if casts is not None:
            return cast_product(x, weights, biases, *casts[name])
        if len(weights) == 1:
            return F.linear(x, weights[0], biases[0])
        return F.linear(x, torch.cat(weights), torch.cat(biases))

    @staticmethod
    def _norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
        """``norm(x)`` in float32, returned in the dtype the next Linear computes in (the autocast dtype under
        autocast: the same values as autocast's float32 LayerNorm and the Linear's cast, in one pass)."""
        kind = x.device.type
        out_dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype
        return layer_norm(x, norm.weight, norm.bias, norm.eps, out_dtype)


class MLLAStage(nn.Module):
    """``depth`` MLLA blocks, then (except in the last stage) patch merging to half the resolution."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float, qkv_bias: bool,
                 drop: float, drop_path: Sequence[float], downsample: bool, with_cp: bool, recompute_wide: bool):
        super().__init__()
        self.with_cp = with_cp
        self.blocks = nn.ModuleList(
            MLLABlock(dim, num_heads, mlp_ratio, qkv_bias, drop, drop_path[i], recompute_wide and not with_cp)
            for i in range(depth))
        self.downsample = PatchMerging(dim, recompute_expansion=recompute_wide) if downsample else None

    def forward(self, x, hw_shape, keep: Optional[torch.Tensor] = None, packed: Optional[list] = None,
                casts: Optional[list] = None):
        """Returns (stage output, its grid, input of the next stage, its grid); ``keep`` (depth, 2, B): the
        blocks' drop-path masks, or None; ``packed``, ``casts``: the blocks' weight casts (MLLABlock.forward), or
        None. Op by op under torch.compile, the stage builds its RoPE tables once for its blocks."""
        rope = self._rope_tables(x, hw_shape)
        for i, block in enumerate(self.blocks):
            x = recomputed(block, x, hw_shape, None if keep is None else keep[i], None if packed is None else packed[i],
                           None if casts is None else casts[i], rope, enabled=self.with_cp)
        if self.downsample is None:
            return x, hw_shape, x, hw_shape
        x_down, down_shape = self.downsample(x, hw_shape)
        return x, hw_shape, x_down, down_shape

    def _rope_tables(self, x: torch.Tensor, hw_shape) -> Optional[tuple]:
        """The RoPE tables of the blocks' linear attention, built once for the stage where the blocks run op by op
        under torch.compile (each block's op would build them in its traced forward and backward); else None."""
        if not torch.compiler.is_compiling() or self.blocks[0].fused(x):
            return None
        return build_rope_tables(*hw_shape, x.shape[-1], x.device, table_dtype(compute_dtype(x)))


@register_backbone
class MLLA(PretrainedBackbone):
    """MLLA backbone: a conv stem, four stages of MLLA blocks, one LayerNorm per output (B, C_i, H_i, W_i).

    Args:
        arch (str, optional): 'tiny', 'small' or 'base' (the released models), or 'nano' (a 1.9M-parameter
            model for CPU demos); sets embed_dim, depths and num_heads. Give either arch or those three.
        embed_dim (int): channels of stage 1 (doubled at each stage).
        depths (Sequence[int]): blocks per stage.
        num_heads (Sequence[int]): attention heads per stage.
        mlp_ratio (float): MLP hidden size / channels. Default 4.
        qkv_bias (bool): bias of the q/k projection. Default True.
        drop_rate (float): dropout after the stem and in the MLPs. Default 0.
        drop_path_rate (float): stochastic depth, rising linearly to this value over all blocks. Default 0.1.
        out_indices (Sequence[int]): stages whose (normalized) outputs are returned. Default (0, 1, 2, 3).
        in_chans (int): image channels. Default 3.
        frozen_stages (int): -1 freezes nothing, 0 the stem, i > 0 the stem and stages 1..i (with their
            output norms). Default -1.
        norm_eval (bool): keep the BatchNorms (stem, patch merging) in eval mode while training. Default False.
        with_cp (bool): gradient checkpointing of each block (less memory, more compute). Default False.
        recompute_wide (bool): recompute the wide activations in the backward instead of storing them: each
            block's MLP branch (LayerNorm, fc1, GELU, fc2: 4C-channel hidden tensors), its first LayerNorm's
            output and the 8C-channel expansion of patch merging. MLLA-T at 2x800x1344 bf16 on an H100: peak
            memory 3.6 -> 2.3 GiB for 9% more device time in forward+backward (benchmarks/NOTES.md). Default
            True; no effect without gradients; with ``with_cp`` only the patch mergings recompute (the blocks
            already do).
        use_checkpoint (bool): the official name of ``with_cp``.
        cuda_graphs (int): replay the training forward and backward as CUDA graphs for up to this many input
            shapes (0: off). For fixed-size batches on a host that cannot keep up with the GPU; the results are
            the eager model's (:class:`~mlla_dense.runtime.training_graphs.TrainingGraphs`). Default 0.
        cuda_graphs_memory_gb (float, optional): capture no new input shape once the captures hold this much
            memory (GiB). Default: no limit.
        compile_fused_blocks (bool): under torch.compile, run each block as the eager fused block's forward and
            backward (two custom ops, mlla_block_op.py) instead of op by op with Inductor tracing into the
            kernels: a shorter compile and the eager block's launches. Not yet validated with
            ``mode='reduce-overhead'`` across input sizes (benchmarks/NOTES.md). Default False.
        img_size, patch_size, num_classes, qk_scale, ape: accepted so that official configs run unchanged;
            img_size, num_classes and qk_scale have no effect on the dense backbone, patch_size must be 4
            and ape must be False (as in every released model).
        init_cfg (dict, optional): e.g. ``dict(type='Pretrained', checkpoint=path, prefix='backbone.')``;
            official ImageNet and detection/segmentation checkpoints load as they are.
    """
    ignored_checkpoint_keys = IGNORED_CHECKPOINT_KEYS
    new_layers = NEW_LAYERS
    packed_block_parameters = staticmethod(packed_parameters)
    checkpoint_help = ('Download the official ImageNet-1K checkpoint of this model '
                       '(https://github.com/LeapLabTHU/MLLA#pretrained-models)')

    arch_settings = ARCH_SETTINGS

    def __init__(self, arch: Optional[str] = None, embed_dim: Optional[int] = None,
                 depths: Optional[Sequence[int]] = None, num_heads: Optional[Sequence[int]] = None,
                 mlp_ratio: float = 4., qkv_bias: bool = True, drop_rate: float = 0.,
                 drop_path_rate: float = 0.1, out_indices: Sequence[int] = (0, 1, 2, 3), in_chans: int = 3,
                 frozen_stages: int = -1, norm_eval: bool = False, with_cp: bool = False,
                 recompute_wide: bool = True, use_checkpoint: bool = False, img_size=224, patch_size: int = 4,
                 num_classes: int = 1000, qk_scale=None, ape: bool = False, cuda_graphs: int = 0,
                 cuda_graphs_memory_gb: Optional[float] = None, compile_fused_blocks: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg, cuda_graphs=cuda_graphs, cuda_graphs_memory_gb=cuda_graphs_memory_gb)
        embed_dim, depths, num_heads = self._resolve_arch(arch, embed_dim, depths, num_heads)
        if patch_size != 4:
            raise ValueError(f'MLLA has a fixed stem of stride 4, patch_size={patch_size} is not supported')
        if ape:
            raise ValueError('ape=True (absolute position embedding) is not used by any released MLLA model '
                             'and is not supported')
        num_stages = len(depths)
        if len(num_heads) != num_stages:
            raise ValueError(f'depths {tuple(depths)} and num_heads {tuple(num_heads)} differ in length')
        out_indices = tuple(out_indices)
        if not out_indices or any(not 0 <= i < num_stages for i in out_indices):
            raise ValueError(f'out_indices {out_indices} must be stage indices in [0, {num_stages})')
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages={frozen_stages} must be in [-1, {num_stages}]')
        self.in_chans = in_chans
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.num_features = [embed_dim * 2 ** i for i in range(num_stages)]

        self.patch_embed = Stem(in_chans, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = self._init_drop_path(drop_path_rate, depths)
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.layers.append(MLLAStage(
                self.num_features[i], depth, num_heads[i], mlp_ratio, qkv_bias, drop_rate,
                dpr[start:start + depth], downsample=i < num_stages - 1, with_cp=with_cp or use_checkpoint,
                recompute_wide=recompute_wide))
        for block in (b for layer in self.layers for b in layer.blocks):
            block.compile_fused = compile_fused_blocks
        for i in out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(self.num_features[i]))
        self.apply(self._init_layer)
        self._freeze_stages()

    @classmethod
    def _resolve_arch(cls, arch, embed_dim, depths, num_heads):
        given = dict(embed_dim=embed_dim, depths=depths, num_heads=num_heads)
        if arch is None:
            if None in given.values():
                raise ValueError(f'give arch (one of {", ".join(cls.arch_settings)}) or all of '
                                 f'embed_dim, depths and num_heads')
            return embed_dim, tuple(depths), tuple(num_heads)
        if arch not in cls.arch_settings:
            raise ValueError(f'unknown MLLA arch {arch!r}; valid: {", ".join(cls.arch_settings)}')
        preset = cls.arch_settings[arch]
        for name, value in given.items():
            if value is not None and (tuple(value) if name != 'embed_dim' else value) != preset[name]:
                raise ValueError(f'arch={arch!r} has {name}={preset[name]}, which conflicts with {name}={value}')
        return preset['embed_dim'], preset['depths'], preset['num_heads']

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def _blocks_take_masks(self, x: torch.Tensor) -> bool:
        """The fused blocks, and the blocks op by op under torch.compile (one draw instead of one per block)."""
        return self.layers[0].blocks[0].fused(x) or torch.compiler.is_compiling()

    def _drop_path_masks(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The backbone's masks; for the blocks op by op under torch.compile already in their compute dtype (cast
        once, not per block: Inductor makes each cast a launch). The fused blocks take them in float32."""
        keep = super()._drop_path_masks(x)
        if keep is not None and not self.layers[0].blocks[0].fused(x):
            keep = keep.to(compute_dtype(x))
        return keep

    def _product_casts(self, x: torch.Tensor) -> Optional[list]:
        """Under torch.compile with the blocks op by op and autocast to a dtype other than the weights': per block,
        {product: (weight cast, bias cast)} of its products (MLLABlock.product_weights), all cast in one foreach
        copy (cast_products.py); None otherwise."""
        if not torch.compiler.is_compiling():
            return None
        blocks = [b for layer in self.layers for b in layer.blocks]
        kind = x.device.type
        if (blocks[0].fused(x) or not torch.is_autocast_enabled(kind)
                or torch.get_autocast_dtype(kind) == blocks[0].out_proj.weight.dtype):
            return None
        products = [block.product_weights() for block in blocks]
        sources = []
        with torch.no_grad():
            for block in products:
                for weights, biases in block.values():
                    sources.append(weights[0] if len(weights) == 1 else torch.cat(weights))
                    if biases[0] is not None:
                        sources.append(biases[0] if len(biases) == 1 else torch.cat(biases))
        casts = iter(cast_all(sources, torch.get_autocast_dtype(kind)))
        return [{name: (next(casts), None if biases[0] is None else next(casts))
                 for name, (weights, biases) in block.items()} for block in products]

    def forward_features(self, x: torch.Tensor):
        x, hw_shape = self.patch_embed(x)
        x = self.pos_drop(x)
        keep = self._drop_path_masks(x)
        packed = self._packed_weights(x)
        casts = self._product_casts(x)
        outs = []
        for i, stage in enumerate(self.layers):
            blocks = slice(self.block_offsets[i], self.block_offsets[i + 1])
            out, out_shape, x, hw_shape = stage(x, hw_shape, None if keep is None else keep[blocks],
                                                None if packed is None else packed[blocks],
                                                None if casts is None else casts[blocks])
            if i in self.out_indices:
                out = autocast_layer_norm(getattr(self, f'norm{i}'), out)
                outs.append(out.reshape(-1, *out_shape, out.shape[-1]).permute(0, 3, 1, 2).contiguous())
        return tuple(outs)
