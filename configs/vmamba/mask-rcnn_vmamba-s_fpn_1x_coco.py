_base_ = '../_base_/mask-rcnn_vmamba_fpn_1x_coco.py'

model = dict(
    backbone=dict(arch='small', drop_path_rate=0.3,
                  init_cfg=dict(checkpoint='data/pretrained/vmamba_s_in1k.pth')))
