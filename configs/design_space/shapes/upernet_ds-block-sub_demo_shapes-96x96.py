# Design space, + block design sub: Mamba's block replaces the attention block, the MLP stays (MLLA's block). Shapes
# demo (nano size, CPU).
_base_ = '../_base_/upernet_design-space_demo_shapes-96x96.py'

model = dict(backbone=dict(block='mamba-sub'))
