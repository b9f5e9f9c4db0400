"""VMamba backbone (SS2D selective scan, Liu et al. 2024) for mmdet and mmseg.

The released dense models (MzeroMiko/VMamba, detection/ and segmentation/, "v2" models) with the official
parameter names, so official backbone state dicts load strictly. Only the channel-first configuration of
those models is built: forward type v05_noz, LayerNorm2d, patch embed v2, downsample v3, d_state 1.
Differences: no sys.path import of the classification code and no CUDA extension to compile; the selective
scan runs through :mod:`mlla_dense.kernels.selective_scan`, and the blocks run on channel-last (B, H, W, C)
tokens (see models/layers/ss2d.py), with the stem and downsampling convolutions in channels-last memory.
"""
from collections import OrderedDict
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from torch import nn

from mlla_dense.kernels.backend import use_triton
from mlla_dense.kernels.layer_norm import layer_norm
from mlla_dense.registry import register_backbone
from .pretrained_backbone import PretrainedBackbone, fused_block_masks
from ..layers.autocast_layer_norm import autocast_layer_norm
from ..layers.channel_first import LayerNorm2d, Linear2d
from ..layers.recompute import recomputed
from ..layers.ss2d import SS2D, compute_dtype
from ..layers.vss_block_function import packed_parameters, vss_block
from ..layers.weight_casts import autocast_weights

ARCH_SETTINGS = {
    'tiny': dict(dims=96, depths=(2, 2, 8, 2), ssm_ratio=1.0, drop_path_rate=0.2),
    'small': dict(dims=96, depths=(2, 2, 15, 2), ssm_ratio=2.0, drop_path_rate=0.3),
    'base': dict(dims=128, depths=(2, 2, 15, 2), ssm_ratio=2.0, drop_path_rate=0.6),
}
# ImageNet checkpoints carry the classifier; output norms are new in the dense backbone.
IGNORED_CHECKPOINT_KEYS = (r'classifier\..*',)
NEW_LAYERS = (r'outnorm\d\..*',)


class Mlp(nn.Module):
    """MLP on (B, H, W, C) tokens (``fc1``, ``act``, ``fc2`` as in the official code, whose 1x1 convs on
    channel-first maps are these products)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.):
        super().__init__()
        self.fc1 = Linear2d(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = Linear2d(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        hidden = self.drop(self.act(F.linear(x, self.fc1.weight, self.fc1.bias)))
        return self.drop(F.linear(hidden, self.fc2.weight, self.fc2.bias))


class VSSBlock(nn.Module):
    """x += SS2D(LN(x)); x += MLP(LN(x)), on (B, H, W, C) tokens; the LayerNorms write the compute dtype (the
    official float32 LayerNorm and the cast of the next product, in one pass).

    With the Triton kernels (and a 3x3 depthwise conv without bias, no dropout, not under torch.compile) the block
    runs as one autograd node with a hand-written backward (:func:`~mlla_dense.models.layers.vss_block_function.
    vss_block`); :meth:`forward_ops` below is the same math op by op, the specification it is tested against.
    """

    def __init__(self, dim: int, drop_path: float, d_state: int, ssm_ratio: float, dt_rank, d_conv: int,
                 conv_bias: bool, mlp_ratio: float, with_cp: bool):
        super().__init__()
        self.with_cp = with_cp
        self.norm = LayerNorm2d(dim)
        self.op = SS2D(dim, d_state=d_state, ssm_ratio=ssm_ratio, dt_rank=dt_rank, d_conv=d_conv,
                       conv_bias=conv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = LayerNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def fused(self, x) -> bool:
        """Whether the block runs as one :class:`VSSBlockFunction` on these tokens."""
        conv = self.op.conv2d
        return (use_triton(x) and not torch.compiler.is_compiling()
                and conv.kernel_size == (3, 3) and conv.bias is None and self.mlp.drop.p == 0)

    def _forward(self, x, keep: Optional[torch.Tensor], packed: Optional[torch.Tensor] = None,
                 a: Optional[torch.Tensor] = None):
        if self.fused(x):
            return vss_block(self, x, *fused_block_masks(self, x, keep), packed, a)
        return self.forward_ops(x)

    def forward_ops(self, x):
        dtype = compute_dtype(x)
        x = x + self.drop_path(self.op(layer_norm(x, self.norm.weight, self.norm.bias, self.norm.eps, dtype)))
        return x + self.drop_path(self.mlp(layer_norm(x, self.norm2.weight, self.norm2.bias, self.norm2.eps, dtype)))

    def forward(self, x, keep: Optional[torch.Tensor] = None, packed: Optional[torch.Tensor] = None,
                a: Optional[torch.Tensor] = None):
        """x: (B, H, W, C) tokens. ``keep`` (2, B), per-sample drop-path masks (0. or 1.) of the two branches
        drawn by the backbone for all blocks at once; drawn here when needed and not given. ``packed`` and ``a``:
        the fused block's weight cast and state matrix -exp(A_logs), made by the backbone for all blocks at once,
        or None."""
        return recomputed(self._forward, x, keep, packed, a, enabled=self.with_cp)


def patch_embed(in_chans: int, dim: int) -> nn.Sequential:
    """Two stride-2 3x3 convs with LayerNorm2d (+ GELU between): patch embed "v2"; Identity slots keep the
    official module indices (0, 2, 5, 7 hold parameters)."""
    return nn.Sequential(nn.Conv2d(in_chans, dim // 2, 3, 2, 1), nn.Identity(), LayerNorm2d(dim // 2),
                         nn.Identity(), nn.GELU(), nn.Conv2d(dim // 2, dim, 3, 2, 1), nn.Identity(),
                         LayerNorm2d(dim))


def downsample(dim: int, out_dim: int) -> nn.Sequential:
    """Stride-2 3x3 conv + LayerNorm2d: downsample "v3" (parameters at indices 1 and 3)."""
    return nn.Sequential(nn.Identity(), nn.Conv2d(dim, out_dim, 3, 2, 1), nn.Identity(), LayerNorm2d(out_dim))


@register_backbone
class VMamba(PretrainedBackbone):
    """VMamba backbone: patch embed, four stages of VSS blocks, one LayerNorm2d per output (B, C_i, H_i, W_i).

    Args:
        arch (str, optional): 'tiny', 'small' or 'base' (the released dense models); sets dims, depths,
            ssm_ratio and the default drop_path_rate. Give either arch or dims and depths.
        dims (int | Sequence[int]): channels of stage 1 (doubled per stage) or of every stage.
        depths (Sequence[int]): blocks per stage.
        ssm_d_state (int): SSM state size. Default 1.
        ssm_ratio (float): SS2D inner channels / channels. Default 2.0 (1.0 for tiny).
        ssm_dt_rank (int | 'auto'): dt projection rank. Default 'auto'.
        ssm_conv (int), ssm_conv_bias (bool): SS2D depthwise conv. Default 3, False.
        mlp_ratio (float): MLP hidden / channels. Default 4.
        drop_path_rate (float): stochastic depth, linear over blocks. Default: the arch's (0.2/0.3/0.6).
        out_indices (Sequence[int]): stages whose normalized outputs are returned. Default (0, 1, 2, 3).
        in_chans (int): image channels. Default 3.
        frozen_stages (int): -1 freezes nothing, 0 the patch embed, i > 0 also stages 1..i. Default -1.
        with_cp (bool): gradient checkpointing per block. Default False.
        cuda_graphs (int): replay the training forward and backward as CUDA graphs for up to this many input
            shapes (0: off); see MLLA. Default 0.
        cuda_graphs_memory_gb (float, optional): the captures' memory limit (GiB); see MLLA. Default: none.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=...)`` (official ImageNet or dense
            checkpoints, ``prefix='backbone.'`` for the latter).
    """
    ignored_checkpoint_keys = IGNORED_CHECKPOINT_KEYS
    new_layers = NEW_LAYERS
    checkpoint_help = ('Download the official ImageNet-1K checkpoint of this model '
                       '(https://github.com/MzeroMiko/VMamba)')
    out_norm_prefix = 'outnorm'
    packed_block_parameters = staticmethod(packed_parameters)

    arch_settings = ARCH_SETTINGS

    def __init__(self, arch: Optional[str] = None, dims=None, depths: Optional[Sequence[int]] = None,
                 ssm_d_state: int = 1, ssm_ratio: Optional[float] = None, ssm_dt_rank='auto', ssm_conv: int = 3,
                 ssm_conv_bias: bool = False, mlp_ratio: float = 4.0, drop_path_rate: Optional[float] = None,
                 out_indices: Sequence[int] = (0, 1, 2, 3), in_chans: int = 3, frozen_stages: int = -1,
                 with_cp: bool = False, cuda_graphs: int = 0, cuda_graphs_memory_gb: Optional[float] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg, cuda_graphs=cuda_graphs, cuda_graphs_memory_gb=cuda_graphs_memory_gb)
        if arch is not None:
            if arch not in self.arch_settings:
                raise ValueError(f'unknown VMamba arch {arch!r}; valid: {", ".join(self.arch_settings)}')
            preset = self.arch_settings[arch]
            dims = preset['dims'] if dims is None else dims
            depths = preset['depths'] if depths is None else depths
            ssm_ratio = preset['ssm_ratio'] if ssm_ratio is None else ssm_ratio
            drop_path_rate = preset['drop_path_rate'] if drop_path_rate is None else drop_path_rate
        if dims is None or depths is None:
            raise ValueError(f'give arch (one of {", ".join(self.arch_settings)}) or dims and depths')
        num_stages = len(depths)
        dims = [int(dims * 2 ** i) for i in range(num_stages)] if isinstance(dims, int) else list(dims)
        ssm_ratio = 2.0 if ssm_ratio is None else ssm_ratio
        drop_path_rate = 0.1 if drop_path_rate is None else drop_path_rate
        out_indices = tuple(out_indices)
        if not out_indices or any(not 0 <= i < num_stages for i in out_indices):
            raise ValueError(f'out_indices {out_indices} must be stage indices in [0, {num_stages})')
        self.dims, self.in_chans, self.out_indices, self.frozen_stages = dims, in_chans, out_indices, frozen_stages
        self.patch_embed = patch_embed(in_chans, dims[0])
        dpr = self._init_drop_path(drop_path_rate, depths)
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            blocks = nn.Sequential(*(VSSBlock(dims[i], dpr[start + j], ssm_d_state, ssm_ratio, ssm_dt_rank,
                                              ssm_conv, ssm_conv_bias, mlp_ratio, with_cp) for j in range(depth)))
            down = downsample(dims[i], dims[i + 1]) if i < num_stages - 1 else nn.Identity()
            self.layers.append(nn.Sequential(OrderedDict(blocks=blocks, downsample=down)))
        for i in out_indices:
            self.add_module(f'outnorm{i}', LayerNorm2d(dims[i]))
        self.apply(self._init_layer)
        self._freeze_stages()

    def forward_features(self, x: torch.Tensor):
        x = self._patch_embed(x.contiguous(memory_format=torch.channels_last))
        keep = self._drop_path_masks(x)
        packed = self._packed_weights(x)
        state_matrices = None if packed is None else self._state_matrices()
        outs = []
        for i, layer in enumerate(self.layers):
            for j, block in enumerate(layer.blocks, self.block_offsets[i]):
                x = (block(x, None if keep is None else keep[j]) if packed is None else
                     block(x, None if keep is None else keep[j], packed[j], state_matrices[j]))
            stage_out = x
            if i in self.out_indices:
                norm = getattr(self, f'outnorm{i}')
                out = layer_norm(stage_out, norm.weight, norm.bias, norm.eps)
                outs.append(out.permute(0, 3, 1, 2).contiguous())
            if i < len(self.layers) - 1:
                x = self._downsample(layer.downsample, stage_out)
        return tuple(outs)

    def _state_matrices(self) -> List[torch.Tensor]:
        """Every block's -exp(A_logs), in two multi-tensor launches instead of two per block (read by the fused
        blocks, which compute A_logs' gradient from it)."""
        with torch.no_grad():
            a = torch._foreach_exp([b.op.A_logs for layer in self.layers for b in layer.blocks])
            torch._foreach_neg_(a)
        return a

    def _patch_embed(self, image: torch.Tensor) -> torch.Tensor:
        """patch_embed on a channels-last image -> (B, H/4, W/4, C) tokens, its conv weights cast together under
        autocast (:func:`autocast_weights`) and its LayerNorms run on the conv outputs' channels-last tokens."""
        conv1, norm1, conv2, norm2 = (self.patch_embed[i] for i in (0, 2, 5, 7))
        w1, b1, w2, b2 = autocast_weights([conv1.weight, conv1.bias, conv2.weight, conv2.bias])
        x = F.conv2d(image, w1, b1, conv1.stride, conv1.padding)
        x = F.gelu(autocast_layer_norm(norm1, x.permute(0, 2, 3, 1)))
        x = F.conv2d(x.permute(0, 3, 1, 2), w2, b2, conv2.stride, conv2.padding)
        return autocast_layer_norm(norm2, x.permute(0, 2, 3, 1))

    @staticmethod
    def _downsample(down: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        """A stage's downsampling of (B, H, W, C) tokens, as :meth:`_patch_embed` runs its convs and norms."""
        conv, norm = down[1], down[3]
        weight, bias = autocast_weights([conv.weight, conv.bias])
        x = F.conv2d(x.permute(0, 3, 1, 2), weight, bias, conv.stride, conv.padding)
        return autocast_layer_norm(norm, x.permute(0, 2, 3, 1))
