_base_ = '../_base_/upernet_mlla_ade20k-512x512.py'

model = dict(
    backbone=dict(arch='small', drop_path_rate=0.4,
                  init_cfg=dict(checkpoint='data/pretrained/mlla_s_in1k.pth')))
