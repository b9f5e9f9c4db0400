# The generated shapes dataset (python tools/make_shapes.py --out data/shapes) read as semantic maps:
# 0 = background, 1..5 = circle, rectangle, triangle, star, cross. Images are resized to 96x96, which keeps
# CPU training fast; predictions are scaled back to the original size for evaluation. The aspect ratio is not
# kept, so that nothing is padded: padded pixels get label 255, which mmseg 1.2.2's class-weighted
# cross-entropy cannot index.
dataset_type = 'BaseSegDataset'
data_root = 'data/shapes/'
dataset_layout = 'shapes'  # names the folder layout tools/train.py prints when data_root is missing
metainfo = dict(classes=('background', 'circle', 'rectangle', 'triangle', 'star', 'cross'),
                palette=[[0, 0, 0], [220, 20, 60], [0, 130, 220], [0, 170, 60], [250, 170, 30], [150, 60, 200]])
crop_size = (96, 96)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=crop_size, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=False),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
                 seg_map_suffix='.png', data_prefix=dict(img_path='images/train', seg_map_path='semantic/train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
                 seg_map_suffix='.png', data_prefix=dict(img_path='images/val', seg_map_path='semantic/val'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
