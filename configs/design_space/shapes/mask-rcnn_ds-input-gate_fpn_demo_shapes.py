# Design space, + input gate: values scaled by softplus(W x + b) per channel (Mamba's Delta). Shapes demo (nano size,
# CPU).
_base_ = '../_base_/mask-rcnn_design-space_fpn_demo_shapes.py'

model = dict(backbone=dict(input_gate=True))
