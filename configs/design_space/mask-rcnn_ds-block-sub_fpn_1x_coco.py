# Design space, + block design sub: Mamba's block replaces the attention block, the MLP stays (MLLA's block). Mask
# R-CNN 1x, COCO.
_base_ = './_base_/mask-rcnn_design-space_fpn_1x_coco.py'

model = dict(backbone=dict(block='mamba-sub'))
