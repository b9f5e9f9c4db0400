_base_ = '../_base_/mask-rcnn_mlla_fpn_coco.py'

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.1,
                  init_cfg=dict(checkpoint='data/pretrained/mlla_b_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
