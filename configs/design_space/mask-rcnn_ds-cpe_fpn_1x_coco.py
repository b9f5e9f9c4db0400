# Design space, forget gate replaced by a positional encoding: CPE (depthwise conv residuals in each block). Mask
# R-CNN 1x, COCO.
_base_ = './_base_/mask-rcnn_design-space_fpn_1x_coco.py'

model = dict(backbone=dict(pos_embed=('cpe',)))
