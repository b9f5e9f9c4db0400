_base_ = '../_base_/upernet_mlla_ade20k-512x512.py'

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.5,
                  init_cfg=dict(checkpoint='data/pretrained/mlla_b_in1k.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
