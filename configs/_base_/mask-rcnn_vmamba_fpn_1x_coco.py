# Mask R-CNN + FPN with a VMamba backbone on COCO, as in the official VMamba detection configs: mmdet's Swin-T
# Mask R-CNN 1x recipe (AdamW lr 1e-4, weight decay 0.05, 1000-iteration warmup, steps after epochs 8 and 11,
# 2 images per GPU on 8 GPUs) with the backbone replaced. Child configs set the VMamba size.
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'

custom_imports = dict(imports=['mlla_dense'], allow_failed_imports=False)
# mmengine's LoggerHook lets every rank write the test metrics file; this one leaves it to rank 0.
# mmengine's CheckpointHook leaves a truncated checkpoint when killed during a save; this one writes atomically.
default_hooks = dict(logger=dict(type='MainProcessLoggerHook'), checkpoint=dict(type='SafeCheckpointHook'))

# Fast training by default: each training batch is padded to one of 8 sizes chosen by tools/shape_buckets.py for the
# single-scale 1333x800 pipeline (COCO-like stream, batch 2: 38 shapes and 6.8% padded pixels with mmdet's divisor 32,
# 7 shapes and 7.1% with these buckets), and the backbone replays its training forward and backward as CUDA graphs,
# one capture per size, while the captures hold <= 8 GiB (eager on CPU, and past either limit, with one warning). Off:
# model.backbone.cuda_graphs=0 and model.data_preprocessor.buckets=[].
model = dict(
    data_preprocessor=dict(
        type='BucketedDetDataPreprocessor',
        buckets=[(800, 800), (800, 1088), (800, 1216), (800, 1344), (1088, 800), (1216, 800), (1344, 800),
                 (1344, 1344)]),
    backbone=dict(
        _delete_=True,
        type='VMamba',
        arch='tiny',
        cuda_graphs=8,
        cuda_graphs_memory_gb=8,
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='data/pretrained/vmamba_t_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]),
    # RoIAlign pools bfloat16 features in float32 (mmcv has no bfloat16 RoIAlign), so bf16 AMP trains
    roi_head=dict(bbox_roi_extractor=dict(type='Float32RoIExtractor'),
                  mask_roi_extractor=dict(type='Float32RoIExtractor')))

# paramwise_cfg (no weight decay on norms) in one parameter group per setting instead of one per parameter: the
# same updates in a few multi-tensor launches (mlla_dense/runtime/merged_param_groups.py)
optim_wrapper = dict(constructor='MergedParamGroupsConstructor')
