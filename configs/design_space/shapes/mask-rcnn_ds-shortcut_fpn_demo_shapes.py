# Design space, + shortcut: a learned D * v around the attention. Shapes demo (nano size, CPU).
_base_ = '../_base_/mask-rcnn_design-space_fpn_demo_shapes.py'

model = dict(backbone=dict(shortcut=True))
