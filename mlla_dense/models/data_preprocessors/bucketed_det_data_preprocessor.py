"""mmdet's DetDataPreprocessor that pads each training batch to one of a few sizes (shape buckets).

Keep-ratio resizing gives COCO batches dozens of padded shapes; a backbone replaying CUDA graphs
(``cuda_graphs``) needs one capture per shape, so it pays only if shapes repeat. Padding a batch further, to
the smallest bucket that holds it, bounds the shapes at the cost of extra padded pixels
(tools/shape_buckets.py measures both on a COCO-like stream). The padding goes at the bottom and right, as
mmdet's own, so boxes and masks keep their coordinates; ``batch_input_shape`` names the bucket and the
ground-truth masks are padded to it. Only training batches are bucketed: evaluation keeps the tight padding,
because extra padding is not exactly neutral for a backbone with global attention (benchmarks/NOTES.md).
"""
import math
from typing import Optional, Sequence, Tuple

import torch.nn.functional as F
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.registry import MODELS


def bucket_shape(height: int, width: int, buckets: Sequence[Tuple[int, int]] = (),
                 divisor: int = 1) -> Tuple[int, int]:
    """The smallest-area bucket (H, W) that holds a ``height`` x ``width`` batch; without one, both sides
    rounded up to a multiple of ``divisor``."""
    fitting = [(h * w, h, w) for h, w in buckets if h >= height and w >= width]
    if fitting:
        _, h, w = min(fitting)
        return h, w
    return math.ceil(height / divisor) * divisor, math.ceil(width / divisor) * divisor


@MODELS.register_module()
class BucketedDetDataPreprocessor(DetDataPreprocessor):
    """DetDataPreprocessor (same arguments) padding training batches to shape buckets.

    Args:
        buckets (Sequence[tuple[int, int]]): (height, width) sizes; a batch goes to the smallest-area one that
            holds it. Batches larger than every bucket are padded to a multiple of ``bucket_divisor``.
        bucket_divisor (int, optional): pad both sides to a multiple of this (e.g. 128). Default:
            ``pad_size_divisor``. Must be a multiple of ``pad_size_divisor``, as must the buckets' sides.
        **kwargs: DetDataPreprocessor's arguments.
    """

    def __init__(self, buckets: Sequence[Sequence[int]] = (), bucket_divisor: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.buckets = tuple((int(h), int(w)) for h, w in buckets)
        self.bucket_divisor = bucket_divisor or self.pad_size_divisor
        if self.bucket_divisor % self.pad_size_divisor:
            raise ValueError(f'bucket_divisor ({self.bucket_divisor}) must be a multiple of pad_size_divisor '
                             f'({self.pad_size_divisor})')
        odd = [b for b in self.buckets if b[0] % self.pad_size_divisor or b[1] % self.pad_size_divisor]
        if odd:
            raise ValueError(f'bucket sides must be multiples of pad_size_divisor ({self.pad_size_divisor}), '
                             f'got {odd}')

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        inputs, samples = data['inputs'], data['data_samples']
        if not training:
            return data
        height, width = inputs.shape[-2:]
        new_height, new_width = bucket_shape(height, width, self.buckets, self.bucket_divisor)
        if (new_height, new_width) == (height, width):
            return data
        inputs = F.pad(inputs, (0, new_width - width, 0, new_height - height), value=self.pad_value)
        if samples is not None:
            for sample in samples:
                sample.set_metainfo({'batch_input_shape': (new_height, new_width)})
            if self.pad_mask:
                self.pad_gt_masks(samples)
            if self.pad_seg:
                self.pad_gt_sem_seg(samples)
        return {'inputs': inputs, 'data_samples': samples}
