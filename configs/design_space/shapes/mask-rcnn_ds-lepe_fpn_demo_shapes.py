# Design space, forget gate replaced by a positional encoding: LePE (depthwise conv of the values). Shapes demo (nano
# size, CPU).
_base_ = '../_base_/mask-rcnn_design-space_fpn_demo_shapes.py'

model = dict(backbone=dict(pos_embed=('lepe',)))
