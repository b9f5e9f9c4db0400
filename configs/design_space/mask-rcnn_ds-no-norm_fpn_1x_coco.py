# Design space, - normalization: no division by the attention's normalizer. Mask R-CNN 1x, COCO.
_base_ = './_base_/mask-rcnn_design-space_fpn_1x_coco.py'

model = dict(backbone=dict(attn_norm=False))
