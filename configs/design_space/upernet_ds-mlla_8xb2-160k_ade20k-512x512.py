# Design space, MLLA-T: block design sub with LePE, CPE and RoPE in place of the forget gate, MLLA's stem and patch
# merging, MLLA-T's sizes: the MLLA backbone (official MLLA-T checkpoints load as they are). UperNet 160k, ADE20K.
_base_ = './_base_/upernet_design-space_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(arch='mlla-t', macro='mlla', block='mamba-sub', pos_embed=('cpe', 'lepe', 'rope'),
                  init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='data/pretrained/mlla_t_in1k.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
