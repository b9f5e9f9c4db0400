"""What the MLLA and VMamba backbones share: input checks, truncated-normal init, strict loading of official
checkpoints, frozen stages, drop-path masks and the fused blocks' weight casts made once per forward, and the
optional CUDA graphs of the training step."""
from typing import List, Optional, Sequence, Tuple

import torch
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch import nn

from mlla_dense.kernels.elementwise import pack_groups
from mlla_dense.utils.checkpoint import extract_state_dict, load_backbone_state_dict, load_checkpoint_file
from mlla_dense.runtime.training_graphs import TrainingGraphs
from ..layers.ss2d import compute_dtype


def fused_block_masks(block: nn.Module, x: torch.Tensor,
                      keep: Optional[torch.Tensor]) -> Tuple[Optional[torch.Tensor], float]:
    """(keep, keep_prob) of a block that runs fused on tokens ``x``: its two branches' (2, B) drop-path masks, the
    backbone's ``keep`` where given, else drawn here (mmcv's DropPath draw), and None where no sample is dropped
    (eval mode, or a block without drop path)."""
    keep_prob = 1.0 - block.drop_path.drop_prob if isinstance(block.drop_path, DropPath) else 1.0
    if not block.training or keep_prob == 1.0:
        return None, keep_prob
    if keep is None:
        keep = torch.rand(2, x.shape[0], device=x.device).add_(keep_prob).floor_()
    return keep, keep_prob


class PretrainedBackbone(BaseModule):
    """Base of the backbones: ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` loads strictly.

    Subclasses name the checkpoint keys to ignore (classifier heads, buffers the official code saves), the
    layers an ImageNet checkpoint cannot have (the per-output norms of the dense models) and where to get the
    official checkpoint, for the message when it is missing. They have ``in_chans``, ``patch_embed``, ``layers``,
    ``out_indices``, ``frozen_stages`` and one output norm per index named ``<out_norm_prefix><i>``, and compute
    their outputs in ``forward_features``.

    Their blocks take per-sample drop-path masks as inputs when they run fused (``blocks[j].fused(x)``; MLLA's
    also op by op under torch.compile, :meth:`_blocks_take_masks`):
    :meth:`_drop_path_masks` draws every block's masks at once, three launches per forward instead of three per
    block, and :meth:`_packed_weights` casts every block's product weights (the parameters that
    ``packed_block_parameters(block, batch)`` names) in one launch instead of one per block.

    ``cuda_graphs=n`` (n > 0) replays the training forward and backward as CUDA graphs captured for up to n
    input signatures, ``cuda_graphs_memory_gb`` bounding their memory (:class:`TrainingGraphs`): for host-bound
    steps with fixed-size or bucketed batches.
    """
    ignored_checkpoint_keys: Tuple[str, ...] = ()
    new_layers: Tuple[str, ...] = ()
    checkpoint_help = ''
    out_norm_prefix = 'norm'
    packed_block_parameters = None  # (block, batch) -> the pieces its fused Function casts

    def __init__(self, init_cfg: Optional[dict] = None, cuda_graphs: int = 0,
                 cuda_graphs_memory_gb: Optional[float] = None):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(cuda_graphs, int) or cuda_graphs < 0:
            raise ValueError(f'cuda_graphs must be an int >= 0 (0: off), got {cuda_graphs!r}')
        self.training_graphs = TrainingGraphs(cuda_graphs, cuda_graphs_memory_gb) if cuda_graphs else None

    def forward(self, x: torch.Tensor):
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f'{type(self).__name__} expects images (B, {self.in_chans}, H, W), '
                             f'got shape {tuple(x.shape)}')
        if self.training_graphs is None:
            return self.forward_features(x)
        return self.training_graphs(self, self.forward_features, x)

    def _init_drop_path(self, drop_path_rate: float, depths: Sequence[int]) -> List[float]:
        """Stochastic depth rising linearly to ``drop_path_rate`` over all blocks: each block's drop probability
        (returned), and what :meth:`_drop_path_masks` needs."""
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.drop_path_rate = drop_path_rate
        self.block_offsets = [sum(depths[:i]) for i in range(len(depths) + 1)]
        self.register_buffer('keep_probs', 1.0 - torch.tensor(dpr), persistent=False)
        return dpr

    def _packed_weights(self, x: torch.Tensor) -> Optional[List[torch.Tensor]]:
        """Every block's fused-Function weight cast (``packed_block_parameters`` of each block, in the dtype of the
        blocks' products) as views of one buffer that one launch fills, when the blocks run fused in eager mode on
        ``x`` (tokens); None otherwise."""
        if torch.compiler.is_compiling() or not self.layers[0].blocks[0].fused(x):
            return None
        blocks = [b for layer in self.layers for b in layer.blocks]
        return pack_groups([self.packed_block_parameters(b, x.shape[0]) for b in blocks], compute_dtype(x))

    def _drop_path_masks(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """(blocks, 2, B) masks of 0. and 1. for the two branches of each block (mmcv's DropPath draw:
        floor(keep_prob + uniform)), block i keeping a sample with probability ``keep_probs[i]``; None when not
        training, when no block drops paths, or when the blocks do not run fused on ``x`` (tokens)."""
        if not (self.training and self.drop_path_rate and self._blocks_take_masks(x)):
            return None
        r = torch.rand(len(self.keep_probs), 2, x.shape[0], device=x.device)
        return r.add_(self.keep_probs.view(-1, 1, 1)).floor_()

    def _blocks_take_masks(self, x: torch.Tensor) -> bool:
        """Whether the blocks apply drop path with the backbone's masks on tokens ``x`` (the fused blocks do)."""
        return self.layers[0].blocks[0].fused(x)

    @staticmethod
    def _init_layer(m):
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def init_weights(self):
        """Load the ``Pretrained`` checkpoint of init_cfg strictly, or defer to mmengine's initializers."""
        cfg = self.init_cfg
        if not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'):
            super().init_weights()
            return
        path = cfg['checkpoint']
        try:
            checkpoint = load_checkpoint_file(path, map_location=cfg.get('map_location', 'cpu'))
        except FileNotFoundError:
            raise FileNotFoundError(
                f'{type(self).__name__} pretrained checkpoint {path!r} not found. {self.checkpoint_help} and save '
                f'it at that path, or train from scratch with --cfg-options model.backbone.init_cfg=None') from None
        state_dict = extract_state_dict(checkpoint, prefix=cfg.get('prefix'))
        self.load_report = load_backbone_state_dict(self, state_dict, ignore=self.ignored_checkpoint_keys,
                                                    may_be_missing=self.new_layers, source=path)
        self._is_init = True

    def _freeze_stages(self):
        """frozen_stages = 0 freezes the patch embedding, i > 0 also stages 1..i with their output norms."""
        frozen = [self.patch_embed] if self.frozen_stages >= 0 else []
        for i in range(max(self.frozen_stages, 0)):
            frozen.append(self.layers[i])
            if i in self.out_indices:
                frozen.append(getattr(self, f'{self.out_norm_prefix}{i}'))
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self
