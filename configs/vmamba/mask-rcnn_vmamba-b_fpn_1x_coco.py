_base_ = '../_base_/mask-rcnn_vmamba_fpn_1x_coco.py'

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.6,
                  init_cfg=dict(checkpoint='data/pretrained/vmamba_b_in1k.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
