# Mask R-CNN 1x on COCO with the design-space backbone at Swin-T size (the MLLA paper's study): the linear-attention
# baseline's switches. Every row of configs/design_space/ inherits this file and changes switches only. Training
# as configs/mlla (the official MLLA recipe: AdamW lr 1e-4, weight decay 0.05, multi-scale + crop augmentation,
# 12 epochs) with Swin-T's drop path 0.2. No ImageNet checkpoints of the study's models exist: they train from
# scratch unless init_cfg names one (the MLLA row loads the official MLLA-T checkpoint).
_base_ = '../../_base_/mask-rcnn_mlla_fpn_coco.py'

model = dict(
    data_preprocessor=dict(buckets=[]),  # no CUDA graphs for the study's rows: no padding beyond mmdet's
    backbone=dict(
        _delete_=True,
        type='LinearAttentionDesignSpace',  # every switch at its default: the linear-attention baseline
        arch='swin-t',
        drop_path_rate=0.2,
        init_cfg=None),
    neck=dict(in_channels=[96, 192, 384, 768]))
