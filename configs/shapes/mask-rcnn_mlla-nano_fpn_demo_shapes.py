# Mask R-CNN with the 1.9M-parameter MLLA-nano backbone, trained from scratch on the generated shapes dataset in minutes
# on a CPU (make demo: 5 epochs, under 6 minutes on one core beside the UperNet training on the 2-core dev machine; box
# and mask mAP 0.586 and 0.574 on val with the seed below there; benchmarks/NOTES.md, "Twenty-fifth session", and "The
# demo's runs" for the recipe's history). Lighter heads than COCO's: a 64-channel FPN with BatchNorm (trains faster from
# scratch) on the first three stages only (strides 4, 8, 16: the shapes are 17 to 65 pixels, so anchors of 16, 32 and 64
# pixels cover them, and every RoI is pooled from stride 4 anyway), fewer proposals (300 / 100 in training), 16 sampled
# RoIs per image (half of them positive, below) and a 32-channel mask head (the mask head's convolutions on the positive
# RoIs were the largest cost late in training: a step took 0.68 s with 64 channels and 32 RoIs, 0.53 s with 32 channels,
# 0.60 s with 16 RoIs), RoIAlign with one sample per bin. Colour jitter (PhotoMetricDistortion) against learning the
# training images' colours, and on half of the images a random unsharp mask (RandomUnsharpMask: a halo along every
# edge), so that a shape's rim may look unlike its inside (the detector had boxed only the inside of outlined shapes).
# Batches are padded to multiples of 8 only (not 32: less padding to compute on; the backbone and the FPN take any
# size), and AdamW runs fused, over one parameter group per setting (fewer kernels; the same update but for the rounding
# of the gradient clipping's norm, summed in the groups' order).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py', '../_base_/shapes_instance.py',
    'mmdet::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mlla_dense'], allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(pad_size_divisor=8),
    # recompute_wide=False: store the wide activations instead of recomputing them in the backward (the demo needs
    # ~1 GiB; -8% CPU time a step on the 2-core Xeon)
    backbone=dict(_delete_=True, type='MLLA', arch='nano', drop_path_rate=0.0, init_cfg=None, recompute_wide=False),
    # FPN levels from the first three stages only (end_level=2); the backbone still returns four, so that
    # configs which replace the backbone (configs/design_space/_base_) keep working
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64, end_level=2, num_outs=3, norm_cfg=dict(type='BN')),
    rpn_head=dict(in_channels=64, feat_channels=64,
                  anchor_generator=dict(scales=[4], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16])),
    roi_head=dict(
        bbox_roi_extractor=dict(type='Float32RoIExtractor', out_channels=64, featmap_strides=[4, 8, 16],
                                roi_layer=dict(sampling_ratio=1)),
        bbox_head=dict(in_channels=64, fc_out_channels=128, num_classes=5),
        mask_roi_extractor=dict(type='Float32RoIExtractor', out_channels=64, featmap_strides=[4, 8, 16],
                                roi_layer=dict(sampling_ratio=1)),
        mask_head=dict(num_convs=2, in_channels=64, conv_out_channels=32, num_classes=5)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=300, max_per_img=100),
        # half of the 16 sampled RoIs positive (mmdet's 0.25 gives 4 per image): more positives for the box,
        # class and mask heads in each step. Box / mask mAP with seeds 0 / 1 / 2 and 5 epochs: 0.586 / 0.574,
        # 0.512 / 0.500, 0.559 / 0.539; with 0.25 and 6 epochs seeds 0 and 2 gave 0.531 / 0.524 and 0.432 / 0.440
        # (benchmarks/NOTES.md, "Twenty-fifth session")
        rcnn=dict(sampler=dict(num=16, pos_fraction=0.5), mask_size=28)),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(max_per_img=20)))

# The fourth stage's parameters get no gradient (the FPN reads three stages): DistributedDataParallel has to be
# told, or it stops at the second iteration of a multi-process run
find_unused_parameters = True

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomUnsharpMask', prob=0.5, sigma=(1.0, 3.0), amount=(1.0, 5.0)),
    dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackDetInputs')
]
# one loader worker: the images are small and quick to load, and two trainings share the 2 cores in make demo
train_dataloader = dict(num_workers=1, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=1)
test_dataloader = val_dataloader

max_epochs = 5
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', constructor='MergedParamGroupsConstructor',
                     optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05, fused=True),
                     paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}), clip_grad=dict(max_norm=10))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=1e-5)
]
default_hooks = dict(logger=dict(type='MainProcessLoggerHook', interval=20),
                     checkpoint=dict(type='SafeCheckpointHook', interval=max_epochs, max_keep_ckpts=1))
log_processor = dict(by_epoch=True)

# One seed for the demo's trainings, so that a run repeats on the same machine (unseeded, the val metrics spread
# widely from run to run on the same data: benchmarks/NOTES.md, "The demo's runs")
randomness = dict(seed=0)
