"""Decode heads for mmseg; importing this registers them."""
from .fast_loss import FCNHeadFastLoss, UPerHeadFastLoss

__all__ = ['FCNHeadFastLoss', 'UPerHeadFastLoss']
