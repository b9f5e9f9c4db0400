# Design space, + block design all: Mamba's block replaces the whole block (2x wider inside, no MLP). Mask R-CNN 1x,
# COCO.
_base_ = './_base_/mask-rcnn_design-space_fpn_1x_coco.py'

model = dict(backbone=dict(block='mamba-all', expand=2.0))
