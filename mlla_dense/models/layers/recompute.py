"""Activation recomputation as the backbones use it: run ``fn`` under non-reentrant checkpointing (only its
inputs are stored; its forward runs again in the backward) when enabled and gradients flow, else plainly."""
import torch
from torch.utils.checkpoint import checkpoint


def recomputed(fn, x: torch.Tensor, *args, enabled: bool = True, random: bool = True):
    """``fn(x, *args)``, recomputed in the backward when ``enabled`` and ``x`` requires grad. ``random=False``
    for an ``fn`` that draws no random numbers: the random generators' states are then not saved and restored
    around the recomputation (host time: a dozen generator state reads per call on the GPU hosts)."""
    if enabled and x.requires_grad:
        return checkpoint(fn, x, *args, use_reentrant=False, preserve_rng_state=random)
    return fn(x, *args)
