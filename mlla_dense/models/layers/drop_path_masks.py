"""Every block's drop-path keep masks of one forward, drawn at once: the fused blocks take them as inputs, so a
backbone spends three launches per forward on them instead of three per block."""
from typing import Optional

import torch


def drop_path_masks(keep_probs: torch.Tensor, x: torch.Tensor, enabled: bool) -> Optional[torch.Tensor]:
    """(blocks, 2, B) masks of 0. and 1. (mmcv's DropPath draw: floor(keep_prob + uniform)) for the two branches
    of each block, block i keeping a sample with probability ``keep_probs[i]``; None when not ``enabled`` (not
    training, blocks not fused, or no block drops paths)."""
    if not enabled:
        return None
    r = torch.rand(len(keep_probs), 2, x.shape[0], device=x.device)
    return r.add_(keep_probs.view(-1, 1, 1)).floor_()
