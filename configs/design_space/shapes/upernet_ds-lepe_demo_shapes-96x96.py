# Design space, forget gate replaced by a positional encoding: LePE (depthwise conv of the values). Shapes demo (nano
# size, CPU).
_base_ = '../_base_/upernet_design-space_demo_shapes-96x96.py'

model = dict(backbone=dict(pos_embed=('lepe',)))
