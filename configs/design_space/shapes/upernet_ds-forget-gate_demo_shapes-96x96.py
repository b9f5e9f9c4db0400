# Design space, + forget gate: a data-dependent decay per head (Mamba-2's form) along the four SS2D directions. Shapes
# demo (nano size, CPU).
_base_ = '../_base_/upernet_design-space_demo_shapes-96x96.py'

model = dict(backbone=dict(forget_gate='mamba2', scan='four_directions'))
