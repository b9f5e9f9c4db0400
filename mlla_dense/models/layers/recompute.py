"""Activation recomputation as the backbones use it: run ``fn`` under non-reentrant checkpointing (only its
inputs are stored; its forward runs again in the backward) when enabled and gradients flow, else plainly."""
import torch
from torch.utils.checkpoint import checkpoint


def recomputed(fn, x: torch.Tensor, *args, enabled: bool = True):
    """``fn(x, *args)``, recomputed in the backward when ``enabled`` and ``x`` requires grad."""
    if enabled and x.requires_grad:
        return checkpoint(fn, x, *args, use_reentrant=False)
    return fn(x, *args)
