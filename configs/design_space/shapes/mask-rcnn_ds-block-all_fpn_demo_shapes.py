# Design space, + block design all: Mamba's block replaces the whole block (2x wider inside, no MLP). Shapes demo
# (nano size, CPU).
_base_ = '../_base_/mask-rcnn_design-space_fpn_demo_shapes.py'

model = dict(backbone=dict(block='mamba-all', expand=2.0))
