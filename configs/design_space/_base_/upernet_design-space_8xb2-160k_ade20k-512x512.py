# UperNet 160k on ADE20K 512x512 with the design-space backbone at Swin-T size: the linear-attention baseline's
# switches; the rows of configs/design_space/ inherit this file and change switches only. Training as
# configs/mlla (AdamW lr 6e-5, weight decay 0.01, poly schedule, 16 images per iteration) with Swin-T's drop path
# 0.3. The study's models train from scratch unless init_cfg names an ImageNet checkpoint.
_base_ = '../../_base_/upernet_mlla_ade20k-512x512.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='LinearAttentionDesignSpace',  # every switch at its default: the linear-attention baseline
        arch='swin-t',
        drop_path_rate=0.3,
        init_cfg=None),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
