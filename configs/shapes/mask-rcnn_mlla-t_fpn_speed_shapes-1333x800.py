# The COCO Mask R-CNN MLLA-T of configs/mlla at its full cost (every image resized to 1333x800, 2 per GPU) on
# the generated shapes dataset (python tools/make_shapes.py --out data/shapes): for speed and multi-GPU scaling
# measurements (tools/benchmark_multigpu.py) without COCO or a pretrained file. Not an accuracy recipe.
_base_ = '../mlla/mask-rcnn_mlla-t_fpn_1x_coco.py'

data_root = 'data/shapes/'
dataset_layout = 'shapes'  # names the folder layout tools/train.py prints when data_root is missing
metainfo = dict(classes=('circle', 'rectangle', 'triangle', 'star', 'cross'),
                palette=[(220, 20, 60), (0, 130, 220), (0, 170, 60), (250, 170, 30), (150, 60, 200)])

model = dict(
    backbone=dict(init_cfg=None),
    roi_head=dict(bbox_head=dict(num_classes=5), mask_head=dict(num_classes=5)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='images/train/'), filter_cfg=dict(filter_empty_gt=True, min_size=8),
                 pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='images/val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
