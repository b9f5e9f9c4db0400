# Design space, - multi-head design: one head whose queries and keys have 16 channels (Mamba's state size). Shapes
# demo (nano size, CPU).
_base_ = '../_base_/mask-rcnn_design-space_fpn_demo_shapes.py'

model = dict(backbone=dict(num_heads=1, key_dim=16))
