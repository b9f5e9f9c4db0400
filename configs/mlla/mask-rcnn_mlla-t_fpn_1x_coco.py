_base_ = '../_base_/mask-rcnn_mlla_fpn_coco.py'
