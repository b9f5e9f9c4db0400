"""The MLLA paper's design space as a backbone for mmdet and mmseg: from linear attention to Mamba, by switches.

Han et al. ("Demystify Mamba in Vision: A Linear Attention Perspective", NeurIPS 2024) write Mamba as linear
attention with six differences (input gate, forget gate, shortcut, no attention normalization, single head,
block design) and replace the forget gate by positional encodings to get MLLA. Every point of that study is a
set of plain constructor arguments here (the mixer's formula: :class:`DesignSpaceMixer`); with MLLA's switches
and macro design the backbone is MLLA, parameter names included, so MLLA checkpoints load as they are.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from mmcv.cnn.bricks.transformer import PatchEmbed, PatchMerging as SwinPatchMerging
from torch import nn

from mlla_dense.kernels.depthwise_conv import depthwise_conv
from mlla_dense.registry import register_backbone
from .mlla import IGNORED_CHECKPOINT_KEYS, MLLA, NEW_LAYERS, MLLABlock, MLLAStage
from .pretrained_backbone import PretrainedBackbone
from ..layers.absolute_pos_embed import AbsolutePositionEmbedding
from ..layers.design_space_mixer import DesignSpaceMixer
from ..layers.mlla_stem import PatchMerging, Stem
from ..layers.mlp import Mlp
from ..layers.silu_gate import silu_gate

ARCH_SETTINGS = {
    'nano': dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8)),  # CPU demos
    'swin-t': dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),  # the paper's study
    'mlla-t': dict(embed_dim=64, depths=(2, 4, 8, 4), num_heads=(2, 4, 8, 16)),
}
BLOCKS = ('transformer', 'mamba-sub', 'mamba-all')
POS_EMBEDS = ('ape', 'lepe', 'cpe', 'rope')
MACROS = ('swin', 'mlla')


class DesignSpaceBlock(nn.Module):
    """One block of the design space on tokens (B, H*W, C); ``kind``:

    - 'transformer' (the linear-attention Transformer): x += out_proj(mixer(LN(x), value=in_proj(LN(x))));
      x += MLP(LN(x));
    - 'mamba-sub' (MLLA's block, Mamba's block in place of the attention block, the MLP kept):
      x += out_proj(mixer(SiLU(dwc(in_proj(LN(x))))) * SiLU(act_proj(LN(x)))); x += MLP(LN(x));
    - 'mamba-all' (Mamba's block alone, ``expand`` times wider inside): the first line only.

    With ``cpe`` a 3x3 depthwise conv residual (conditional positional encoding) precedes each of the two
    branches (``cpe1``, ``cpe2``). Parameter names are MLLA's.
    """

    def __init__(self, dim: int, kind: str, mixer: dict, cpe: bool, mlp_ratio: float, expand: float,
                 drop: float, drop_path: float):
        super().__init__()
        self.kind = kind
        inner = int(dim * expand) if kind == 'mamba-all' else dim
        self.cpe1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim) if cpe else None
        self.norm1 = nn.LayerNorm(dim)
        self.in_proj = nn.Linear(dim, inner)
        if kind != 'transformer':
            self.act_proj = nn.Linear(dim, inner)
            self.dwc = nn.Conv2d(inner, inner, 3, padding=1, groups=inner)
        self.attn = DesignSpaceMixer(inner, **mixer)
        self.out_proj = nn.Linear(inner, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if kind != 'mamba-all':
            self.cpe2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim) if cpe else None
            self.norm2 = nn.LayerNorm(dim)
            self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor, hw_shape, keep=None, packed=None, casts=None, rope=None) -> torch.Tensor:
        """x: (B, H*W, C) tokens; ``keep``, ``packed``, ``casts`` and ``rope`` (what MLLA's blocks take from the
        shared stage walk) are unused: the drop paths here draw their own."""
        x = self._cpe(self.cpe1, x, hw_shape)
        y = MLLABlock._norm(self.norm1, x)
        if self.kind == 'transformer':
            mixed = self.attn(y, hw_shape, value=self.in_proj(y))
        else:
            gate, u = F.linear(y, torch.cat((self.act_proj.weight, self.in_proj.weight)),
                               torch.cat((self.act_proj.bias, self.in_proj.bias))).chunk(2, dim=-1)
            u = depthwise_conv(u, hw_shape, self.dwc.weight, self.dwc.bias, activation='silu')
            mixed = silu_gate(self.attn(u, hw_shape), gate)
        x = x + self.drop_path(self.out_proj(mixed))
        if self.kind == 'mamba-all':
            return x
        x = self._cpe(self.cpe2, x, hw_shape)
        return x + self.drop_path(self.mlp(MLLABlock._norm(self.norm2, x)))

    @staticmethod
    def _cpe(conv, x, hw_shape):
        return x if conv is None else depthwise_conv(x, hw_shape, conv.weight, conv.bias, residual=True)


class DesignSpaceStage(nn.Module):
    """``depth`` blocks, then (except in the last stage) downsampling to half the resolution, twice the channels:
    MLLA's patch merging (macro 'mlla') or Swin's (2x2 neighbours concatenated, LayerNorm, linear; 'swin')."""

    def __init__(self, dim: int, depth: int, block: dict, drop_path: Sequence[float], downsample: Optional[str],
                 with_cp: bool):
        super().__init__()
        self.with_cp = with_cp
        self.blocks = nn.ModuleList(DesignSpaceBlock(dim, drop_path=p, **block) for p in drop_path[:depth])
        if downsample == 'mlla':
            self.downsample = PatchMerging(dim)
        elif downsample == 'swin':
            self.downsample = SwinPatchMerging(dim, 2 * dim)
        else:
            self.downsample = None

    forward = MLLAStage.forward  # (stage output, its grid, input of the next stage, its grid)

    def _rope_tables(self, x, hw_shape):
        """None: the mixers build their own positional encodings."""
        return None


class SwinStem(nn.Module):
    """Swin's patch embedding: 4x4 conv of stride 4 (the image padded to a multiple of 4), LayerNorm."""

    def __init__(self, in_channels: int, embed_dim: int):
        super().__init__()
        self.embed = PatchEmbed(in_channels, embed_dim, kernel_size=4, stride=4, padding='corner',
                                norm_cfg=dict(type='LN'))

    def forward(self, x):
        x, hw_shape = self.embed(x)
        return x, tuple(hw_shape)


class StemWithPositionEmbedding(nn.Module):
    """A stem followed by the absolute position embedding of its token grid."""

    def __init__(self, stem: nn.Module, embed_dim: int):
        super().__init__()
        self.stem = stem
        self.ape = AbsolutePositionEmbedding(embed_dim)

    def forward(self, x):
        x, hw_shape = self.stem(x)
        return self.ape(x, hw_shape), hw_shape


@register_backbone
class LinearAttentionDesignSpace(PretrainedBackbone):
    """Backbone of the linear-attention / Mamba design space: a stem, four stages of :class:`DesignSpaceBlock`,
    one LayerNorm per output (B, C_i, H_i, W_i). The switches are plain arguments (configs/design_space/).

    Args:
        arch (str, optional): 'swin-t' (96 channels, depths 2-2-6-2, heads 3-6-12-24: the paper's study),
            'mlla-t' (MLLA-T's 64, 2-4-8-4, 2-4-8-16) or 'nano' (32, 1-1-2-1, 1-2-4-8: CPU demos). Give either
            arch or embed_dim, depths and num_heads.
        embed_dim (int), depths (Sequence[int]), num_heads (int | Sequence[int]): channels of stage 1 (doubled
            per stage), blocks per stage, heads per stage (one number: the same in every stage; 1: single head).
        key_dim (int, optional): query/key channels per head (default: channels / heads); Mamba's single head
            has its state size, 16.
        input_gate (bool): Mamba's input gate on the values. Default False.
        forget_gate (str): 'none', 'retnet', 'mamba2' or 'gla' (layers/forget_gate.py). Default 'none'.
        scan (str): the forget gate's scan order, 'raster' or 'four_directions' (SS2D). Default 'four_directions'.
        shortcut (bool): the learned shortcut D * v around the attention. Default False.
        attn_norm (bool): divide by the attention's normalizer. Default True.
        pos_embed (Sequence[str]): any of 'ape' (absolute, added after the stem), 'lepe' (on the values),
            'cpe' (depthwise conv residuals in every block), 'rope' (2D RoPE of queries and keys). Default ().
        block (str): 'transformer', 'mamba-sub' or 'mamba-all' (see DesignSpaceBlock). Default 'transformer'.
        expand (float): inner width / channels of 'mamba-all' blocks. Default 2 (Mamba's).
        macro (str): stem and downsampling, 'swin' (4x4 patch embedding, Swin's patch merging) or 'mlla' (MLLA's
            conv stem and patch merging). Default 'swin'.
        mlp_ratio (float), qkv_bias (bool), drop_rate (float), drop_path_rate (float), out_indices, in_chans,
            frozen_stages, with_cp, cuda_graphs, cuda_graphs_memory_gb, init_cfg: as in :class:`MLLA`. An arch
            preset gives the sizes; embed_dim, depths and num_heads given as well replace its values.
    """
    ignored_checkpoint_keys = IGNORED_CHECKPOINT_KEYS
    new_layers = NEW_LAYERS
    checkpoint_help = ('Train an ImageNet model of this design first (no ablation checkpoints were released); '
                       'the MLLA point loads the official MLLA checkpoint (https://github.com/LeapLabTHU/MLLA)')
    arch_settings = ARCH_SETTINGS

    def __init__(self, arch: Optional[str] = 'swin-t', embed_dim: Optional[int] = None,
                 depths: Optional[Sequence[int]] = None, num_heads=None, key_dim: Optional[int] = None,
                 input_gate: bool = False, forget_gate: str = 'none', scan: str = 'four_directions',
                 shortcut: bool = False, attn_norm: bool = True, pos_embed: Sequence[str] = (),
                 block: str = 'transformer', expand: float = 2.0, macro: str = 'swin', mlp_ratio: float = 4.,
                 qkv_bias: bool = True, drop_rate: float = 0., drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (0, 1, 2, 3), in_chans: int = 3, frozen_stages: int = -1,
                 with_cp: bool = False, cuda_graphs: int = 0, cuda_graphs_memory_gb: Optional[float] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg, cuda_graphs=cuda_graphs, cuda_graphs_memory_gb=cuda_graphs_memory_gb)
        embed_dim, depths, num_heads = self._resolve_arch(arch, embed_dim, depths, num_heads)
        pos_embed = tuple(pos_embed)
        for name, value, valid in (('block', block, BLOCKS), ('macro', macro, MACROS)):
            if value not in valid:
                raise ValueError(f'{name}={value!r} is not one of {", ".join(valid)}')
        if any(p not in POS_EMBEDS for p in pos_embed):
            raise ValueError(f'pos_embed={pos_embed} may hold only {", ".join(POS_EMBEDS)}')
        num_stages = len(depths)
        out_indices = tuple(out_indices)
        if not out_indices or any(not 0 <= i < num_stages for i in out_indices):
            raise ValueError(f'out_indices {out_indices} must be stage indices in [0, {num_stages})')
        self.in_chans, self.out_indices, self.frozen_stages = in_chans, out_indices, frozen_stages
        self.num_features = [embed_dim * 2 ** i for i in range(num_stages)]
        self.patch_embed = Stem(in_chans, embed_dim) if macro == 'mlla' else SwinStem(in_chans, embed_dim)
        if 'ape' in pos_embed:
            self.patch_embed = StemWithPositionEmbedding(self.patch_embed, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = self._init_drop_path(drop_path_rate, depths)
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            mixer = dict(num_heads=num_heads[i], key_dim=key_dim, input_gate=input_gate, forget_gate=forget_gate,
                         scan=scan, shortcut=shortcut, attn_norm=attn_norm, rope='rope' in pos_embed,
                         lepe='lepe' in pos_embed, qkv_bias=qkv_bias)
            block_cfg = dict(kind=block, mixer=mixer, cpe='cpe' in pos_embed, mlp_ratio=mlp_ratio, expand=expand,
                             drop=drop_rate)
            start = sum(depths[:i])
            self.layers.append(DesignSpaceStage(self.num_features[i], depth, block_cfg, dpr[start:start + depth],
                                                macro if i < num_stages - 1 else None, with_cp))
        for i in out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(self.num_features[i]))
        self.apply(self._init_layer)
        self._freeze_stages()

    @classmethod
    def _resolve_arch(cls, arch, embed_dim, depths, num_heads):
        if arch is not None and arch not in cls.arch_settings:
            raise ValueError(f'unknown arch {arch!r}; valid: {", ".join(cls.arch_settings)}')
        preset = cls.arch_settings[arch] if arch is not None else {}
        embed_dim = preset.get('embed_dim') if embed_dim is None else embed_dim
        depths = tuple(preset.get('depths') if depths is None else depths)
        num_heads = preset.get('num_heads') if num_heads is None else num_heads
        if embed_dim is None or not depths or num_heads is None:
            raise ValueError('give arch or all of embed_dim, depths and num_heads')
        num_heads = (num_heads,) * len(depths) if isinstance(num_heads, int) else tuple(num_heads)
        if len(num_heads) != len(depths):
            raise ValueError(f'depths {depths} and num_heads {num_heads} differ in length')
        return embed_dim, depths, num_heads

    forward_features = MLLA.forward_features  # stem, stages, output norms: the same walk

    def _drop_path_masks(self, x):
        """No masks drawn ahead (MLLA's fused blocks use them; these blocks run op by op)."""
        return None

    def _packed_weights(self, x):
        """No weight casts made ahead, for the same reason."""
        return None

    def _product_casts(self, x):
        """None, as :meth:`_packed_weights`."""
        return None
