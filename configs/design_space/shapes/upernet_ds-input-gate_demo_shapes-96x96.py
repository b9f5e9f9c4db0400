# Design space, + input gate: values scaled by softplus(W x + b) per channel (Mamba's Delta). Shapes demo (nano size,
# CPU).
_base_ = '../_base_/upernet_design-space_demo_shapes-96x96.py'

model = dict(backbone=dict(input_gate=True))
