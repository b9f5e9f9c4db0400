# Design space, forget gate replaced by a positional encoding: 2D RoPE of queries and keys. Mask R-CNN 1x, COCO.
_base_ = './_base_/mask-rcnn_design-space_fpn_1x_coco.py'

model = dict(backbone=dict(pos_embed=('rope',)))
