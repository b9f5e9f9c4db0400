# Design space, + shortcut: a learned D * v around the attention. Shapes demo (nano size, CPU).
_base_ = '../_base_/upernet_design-space_demo_shapes-96x96.py'

model = dict(backbone=dict(shortcut=True))
