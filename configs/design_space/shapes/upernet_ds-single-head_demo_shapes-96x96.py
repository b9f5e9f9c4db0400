# Design space, - multi-head design: one head whose queries and keys have 16 channels (Mamba's state size). Shapes
# demo (nano size, CPU).
_base_ = '../_base_/upernet_design-space_demo_shapes-96x96.py'

model = dict(backbone=dict(num_heads=1, key_dim=16))
