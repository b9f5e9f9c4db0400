_base_ = '../_base_/mask-rcnn_mlla_fpn_coco.py'

model = dict(
    backbone=dict(arch='small', drop_path_rate=0.1,
                  init_cfg=dict(checkpoint='data/pretrained/mlla_s_in1k.pth')))
