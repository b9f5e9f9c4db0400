# Design space, + block design all: Mamba's block replaces the whole block (2x wider inside, no MLP). Shapes demo
# (nano size, CPU).
_base_ = '../_base_/upernet_design-space_demo_shapes-96x96.py'

model = dict(backbone=dict(block='mamba-all', expand=2.0))
