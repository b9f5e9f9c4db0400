# Design space, - normalization: no division by the attention's normalizer. Shapes demo (nano size, CPU).
_base_ = '../_base_/upernet_design-space_demo_shapes-96x96.py'

model = dict(backbone=dict(attn_norm=False))
