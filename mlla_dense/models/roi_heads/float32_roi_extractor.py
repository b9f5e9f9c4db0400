"""mmdet's SingleRoIExtractor that pools bfloat16 features in float32.

mmcv 2.1's RoIAlign kernels (CPU and CUDA) have no bfloat16 version, so a Mask R-CNN trained with
``AmpOptimWrapper(dtype='bfloat16')`` stops at the first RoI pooling ("roi_align_forward_cuda_kernel not
implemented for 'BFloat16'"). Upcasting the features of the pooled RoIs is exact (bfloat16 embeds in float32);
the heads after it run under autocast as before. float32 and float16 features pass through unchanged.
"""
import torch
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from mmdet.registry import MODELS


@MODELS.register_module()
class Float32RoIExtractor(SingleRoIExtractor):
    """SingleRoIExtractor (same arguments) whose RoIAlign reads bfloat16 features as float32."""

    def forward(self, feats, rois, roi_scale_factor=None):
        if any(f.dtype == torch.bfloat16 for f in feats):
            feats = tuple(f.float() for f in feats)
            rois = rois.float()
        return super().forward(feats, rois, roi_scale_factor)
