# Design space, + block design sub: Mamba's block replaces the attention block, the MLP stays (MLLA's block). Shapes
# demo (nano size, CPU).
_base_ = '../_base_/mask-rcnn_design-space_fpn_demo_shapes.py'

model = dict(backbone=dict(block='mamba-sub'))
