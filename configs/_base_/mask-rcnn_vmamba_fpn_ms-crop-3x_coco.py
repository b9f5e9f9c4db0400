# The 3x variant of mask-rcnn_vmamba_fpn_1x_coco.py: DETR-style multi-scale + crop augmentation, 36 epochs,
# steps after epochs 27 and 33 (mmdet's Swin-T 3x recipe, as the official VMamba 3x configs).
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'

custom_imports = dict(imports=['mlla_dense'], allow_failed_imports=False)
# mmengine's LoggerHook lets every rank write the test metrics file; this one leaves it to rank 0.
# mmengine's CheckpointHook leaves a truncated checkpoint when killed during a save; this one writes atomically.
default_hooks = dict(logger=dict(type='MainProcessLoggerHook'), checkpoint=dict(type='SafeCheckpointHook'))

model = dict(
    backbone=dict(
        _delete_=True,
        type='VMamba',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='data/pretrained/vmamba_t_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]),
    # RoIAlign pools bfloat16 features in float32 (mmcv has no bfloat16 RoIAlign), so bf16 AMP trains
    roi_head=dict(bbox_roi_extractor=dict(type='Float32RoIExtractor'),
                  mask_roi_extractor=dict(type='Float32RoIExtractor')))
