# Design space, the linear-attention baseline: Swin-T with linear attention (every switch at its default). Mask R-CNN
# 1x, COCO.
_base_ = './_base_/mask-rcnn_design-space_fpn_1x_coco.py'
