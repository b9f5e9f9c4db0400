"""Absolute position embedding (APE) of a token grid, learned at one grid size and resized to others."""
import torch
import torch.nn.functional as F
from mmengine.model.weight_init import trunc_normal_
from torch import nn


class AbsolutePositionEmbedding(nn.Module):
    """A learned (C, H0, W0) table added to the tokens (B, H*W, C); other grids get it resized bicubically (as
    Swin's dense models do). H0 x W0 = 56 x 56: the stem's grid of a 224x224 image."""

    def __init__(self, dim: int, grid=(56, 56)):
        super().__init__()
        self.absolute_pos_embed = nn.Parameter(trunc_normal_(torch.empty(1, dim, *grid), std=.02))

    def forward(self, x: torch.Tensor, hw_shape) -> torch.Tensor:
        table = self.absolute_pos_embed
        if tuple(table.shape[-2:]) != tuple(hw_shape):
            table = F.interpolate(table, size=tuple(hw_shape), mode='bicubic', align_corners=False)
        return x + table.flatten(2).transpose(1, 2).to(x.dtype)
