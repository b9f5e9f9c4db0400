# Mask R-CNN + FPN with an MLLA backbone on COCO, as in the official MLLA detection configs: DETR-style
# multi-scale resize + crop augmentation (for 1x and 3x alike), AdamW lr 1e-4, weight decay 0.05 (none on
# norms), 500-iteration linear warmup, 2 images per GPU on 8 GPUs. Child configs set the MLLA size, the drop
# path rate and the schedule (this file defaults to 1x: 12 epochs, lr steps after epochs 8 and 11).
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'

custom_imports = dict(imports=['mlla_dense'], allow_failed_imports=False)
# mmengine's LoggerHook lets every rank write the test metrics file; this one leaves it to rank 0.
# mmengine's CheckpointHook leaves a truncated checkpoint when killed during a save; this one writes atomically.
default_hooks = dict(logger=dict(type='MainProcessLoggerHook'), checkpoint=dict(type='SafeCheckpointHook'))

# Fast training by default: each training batch is padded to one of 12 sizes chosen by tools/shape_buckets.py for the
# multi-scale + crop pipeline (COCO-like stream, batch 2: 513 shapes and 23.9% padded pixels with mmdet's divisor 32,
# 12 shapes and 43.4% with these buckets), and the backbone replays its training forward and backward as CUDA graphs,
# one capture per size, while the captures hold <= 8 GiB (eager on CPU, and past either limit, with one warning). Off:
# model.backbone.cuda_graphs=0 and model.data_preprocessor.buckets=[].
model = dict(
    data_preprocessor=dict(
        type='BucketedDetDataPreprocessor',
        buckets=[(640, 768), (672, 896), (736, 992), (800, 1024), (800, 1152), (832, 832), (832, 1344), (896, 672),
                 (1024, 768), (1152, 800), (1216, 992), (1344, 1344)]),
    backbone=dict(
        _delete_=True,
        type='MLLA',
        arch='tiny',
        cuda_graphs=12,
        cuda_graphs_memory_gb=8,
        drop_path_rate=0.1,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='data/pretrained/mlla_t_in1k.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]),
    # RoIAlign pools bfloat16 features in float32 (mmcv has no bfloat16 RoIAlign), so bf16 AMP trains
    roi_head=dict(bbox_roi_extractor=dict(type='Float32RoIExtractor'),
                  mask_roi_extractor=dict(type='Float32RoIExtractor')))

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1)
]

# paramwise_cfg (no weight decay on norms) in one parameter group per setting instead of one per parameter: the
# same updates in a few multi-tensor launches (mlla_dense/runtime/merged_param_groups.py)
optim_wrapper = dict(constructor='MergedParamGroupsConstructor')
