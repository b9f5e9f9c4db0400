_base_ = '../_base_/mask-rcnn_mlla_fpn_coco.py'

model = dict(backbone=dict(drop_path_rate=0.3))

# 3x schedule: 36 epochs, lr steps after epochs 27 and 33
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1)
]
