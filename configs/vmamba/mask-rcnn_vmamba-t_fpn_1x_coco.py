_base_ = '../_base_/mask-rcnn_vmamba_fpn_1x_coco.py'
