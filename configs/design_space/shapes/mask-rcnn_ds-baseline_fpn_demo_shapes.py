# Design space, the linear-attention baseline: Swin-T with linear attention (every switch at its default). Shapes demo
# (nano size, CPU).
_base_ = '../_base_/mask-rcnn_design-space_fpn_demo_shapes.py'
