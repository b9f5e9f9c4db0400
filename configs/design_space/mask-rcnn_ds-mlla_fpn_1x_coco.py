# Design space, MLLA-T: block design sub with LePE, CPE and RoPE in place of the forget gate, MLLA's stem and patch
# merging, MLLA-T's sizes: the MLLA backbone (official MLLA-T checkpoints load as they are). Mask R-CNN 1x, COCO.
_base_ = './_base_/mask-rcnn_design-space_fpn_1x_coco.py'

model = dict(
    backbone=dict(arch='mlla-t', macro='mlla', block='mamba-sub', pos_embed=('cpe', 'lepe', 'rope'), drop_path_rate=0.1,
                  init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='data/pretrained/mlla_t_in1k.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
