# UperNet with the 1.9M-parameter MLLA-nano backbone on the generated shapes dataset, in minutes on a CPU
# (make demo: once from scratch, shortly, to pretrain the backbone; once from the Mask R-CNN's backbone).
# A 64-channel UPerHead and no auxiliary head keep it light. Background covers ~90% of the pixels: its loss
# weight is 0.1, so that the five shape classes are learnt within 500 iterations (with 0.3, the pixel accuracy
# of a 200-iteration run from scratch stayed at the background's share, ~90%).
_base_ = [
    'mmseg::_base_/models/upernet_swin.py', '../_base_/shapes_semantic.py',
    'mmseg::_base_/default_runtime.py'
]
custom_imports = dict(imports=['mlla_dense'], allow_failed_imports=False)

crop_size = (96, 96)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(_delete_=True, type='MLLA', arch='nano', drop_path_rate=0.0, init_cfg=None),
    decode_head=dict(in_channels=[32, 64, 128, 256], channels=64, num_classes=6, norm_cfg=norm_cfg,
                     pool_scales=(1, 2, 3),
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                                      class_weight=[0.1, 1.0, 1.0, 1.0, 1.0, 1.0])),
    auxiliary_head=None,
    test_cfg=dict(mode='whole'))

max_iters = 500
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=3e-3, weight_decay=0.01, fused=True),
                     paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', eta_min=1e-5, power=1.0, by_epoch=False, begin=30, end=max_iters)
]
default_hooks = dict(logger=dict(type='MainProcessLoggerHook', interval=20, log_metric_by_epoch=False),
                     checkpoint=dict(type='SafeCheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1))
