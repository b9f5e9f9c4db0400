# Design space, + input gate: values scaled by softplus(W x + b) per channel (Mamba's Delta). Mask R-CNN 1x, COCO.
_base_ = './_base_/mask-rcnn_design-space_fpn_1x_coco.py'

model = dict(backbone=dict(input_gate=True))
