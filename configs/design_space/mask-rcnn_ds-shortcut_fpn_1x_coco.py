# Design space, + shortcut: a learned D * v around the attention. Mask R-CNN 1x, COCO.
_base_ = './_base_/mask-rcnn_design-space_fpn_1x_coco.py'

model = dict(backbone=dict(shortcut=True))
