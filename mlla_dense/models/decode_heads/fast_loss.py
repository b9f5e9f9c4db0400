"""mmseg's UPerHead and FCNHead with a training loss that costs a fraction of the time, same values.

mmseg's ``loss_by_feat`` upsamples the logits to the label size with ``F.interpolate`` and scores the training
accuracy with ``topk``. At ADE20K's 8x512x512 with 150 classes, in bfloat16 on an H200, the upsample's backward
(atomic adds into the small input) and the topk over full-size logits took more device time than a graph-replayed
MLLA-T backbone (benchmarks/NOTES.md). Here the upsample is :func:`bilinear_resize` (two matrix products, equal
up to rounding) and the accuracy an argmax (top-1 is the argmax). Everything else is mmseg's: the losses, the
sampler, ignore_index, and the inference path.
"""
import torch
from mmseg.models.decode_heads import FCNHead, UPerHead
from mmseg.registry import MODELS

from ..layers.bilinear_resize import bilinear_resize


def top1_accuracy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Percentage of labelled pixels whose argmax is their label, shape (1,) like mmseg's ``accuracy``. The
    argmax is ``max``'s indices (the same first maximal index), which on CPU reduces the class dim an order of
    magnitude faster than ``argmax`` (benchmarks/NOTES.md)."""
    valid = labels != ignore_index
    correct = (logits.detach().max(1).indices == labels) & valid
    eps = torch.finfo(torch.float32).eps
    return (correct.sum().float() + eps).mul(100.0).div(valid.sum().float() + eps).reshape(1)


class FastLossMixin:
    """``loss_by_feat`` of BaseDecodeHead with the matrix-product upsample and the argmax accuracy."""

    def loss_by_feat(self, seg_logits, batch_data_samples) -> dict:
        seg_label = self._stack_batch_gt(batch_data_samples)
        seg_logits = bilinear_resize(seg_logits, seg_label.shape[2:], self.align_corners)
        seg_weight = self.sampler.sample(seg_logits, seg_label) if self.sampler is not None else None
        seg_label = seg_label.squeeze(1)
        losses_decode = self.loss_decode if isinstance(self.loss_decode, torch.nn.ModuleList) else [self.loss_decode]
        loss = {}
        for loss_decode in losses_decode:
            value = loss_decode(seg_logits, seg_label, weight=seg_weight, ignore_index=self.ignore_index)
            name = loss_decode.loss_name
            loss[name] = loss[name] + value if name in loss else value
        loss['acc_seg'] = top1_accuracy(seg_logits, seg_label, self.ignore_index)
        return loss


@MODELS.register_module()
class UPerHeadFastLoss(FastLossMixin, UPerHead):
    """UPerHead (same arguments and weights) with the fast training loss."""


@MODELS.register_module()
class FCNHeadFastLoss(FastLossMixin, FCNHead):
    """FCNHead (same arguments and weights) with the fast training loss."""
