# Design space, the linear-attention baseline: Swin-T with linear attention (every switch at its default). Shapes demo
# (nano size, CPU).
_base_ = '../_base_/upernet_design-space_demo_shapes-96x96.py'
