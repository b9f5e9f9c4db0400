# Design space, - normalization: no division by the attention's normalizer. Shapes demo (nano size, CPU).
_base_ = '../_base_/mask-rcnn_design-space_fpn_demo_shapes.py'

model = dict(backbone=dict(attn_norm=False))
