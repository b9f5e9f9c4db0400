_base_ = '../_base_/mask-rcnn_vmamba_fpn_ms-crop-3x_coco.py'
