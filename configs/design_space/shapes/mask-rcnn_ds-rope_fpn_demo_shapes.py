# Design space, forget gate replaced by a positional encoding: 2D RoPE of queries and keys. Shapes demo (nano size,
# CPU).
_base_ = '../_base_/mask-rcnn_design-space_fpn_demo_shapes.py'

model = dict(backbone=dict(pos_embed=('rope',)))
