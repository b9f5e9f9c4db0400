_base_ = '../_base_/upernet_vmamba_ade20k-512x512.py'

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.6,
                  init_cfg=dict(checkpoint='data/pretrained/vmamba_b_in1k.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))
