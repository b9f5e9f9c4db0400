# Mask R-CNN with the 1.9M-parameter MLLA-nano backbone, trained on the generated shapes dataset in minutes on
# a CPU (from scratch, or, in make demo, from the backbone of a short UperNet pretraining). Lighter heads than
# COCO's (64-channel FPN with BatchNorm, which trains faster from scratch; fewer proposals and sampled RoIs;
# RoIAlign with 2x2 samples per bin). Batches are padded to multiples of 8 only (not 32: less padding to
# compute on; the backbone and the FPN take any size), and AdamW runs fused (the same update, fewer kernels).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py', '../_base_/shapes_instance.py',
    'mmdet::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mlla_dense'], allow_failed_imports=False)

model = dict(
    data_preprocessor=dict(pad_size_divisor=8),
    backbone=dict(_delete_=True, type='MLLA', arch='nano', drop_path_rate=0.0, init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64, norm_cfg=dict(type='BN')),
    rpn_head=dict(in_channels=64, feat_channels=64,
                  anchor_generator=dict(scales=[4], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64])),
    roi_head=dict(
        bbox_roi_extractor=dict(type='Float32RoIExtractor', out_channels=64, roi_layer=dict(sampling_ratio=2)),
        bbox_head=dict(in_channels=64, fc_out_channels=128, num_classes=5),
        mask_roi_extractor=dict(type='Float32RoIExtractor', out_channels=64, roi_layer=dict(sampling_ratio=2)),
        mask_head=dict(num_convs=2, in_channels=64, conv_out_channels=64, num_classes=5)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=32), mask_size=28)),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(max_per_img=20)))

max_epochs = 3
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05, fused=True),
                     paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}), clip_grad=dict(max_norm=10))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=1e-5)
]
default_hooks = dict(logger=dict(type='MainProcessLoggerHook', interval=20),
                     checkpoint=dict(type='SafeCheckpointHook', interval=max_epochs, max_keep_ckpts=1))
log_processor = dict(by_epoch=True)
