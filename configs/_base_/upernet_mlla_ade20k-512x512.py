# UperNet with an MLLA backbone on ADE20K 512x512, as in the official MLLA segmentation config (released for
# MLLA-B): AdamW lr 6e-5, weight decay 0.01 (none on norms), 1500-iteration linear warmup then poly decay,
# 160k iterations, 2 images per GPU on 8 GPUs. Child configs set the MLLA size and the head input channels.
_base_ = 'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'

custom_imports = dict(imports=['mlla_dense'], allow_failed_imports=False)
# mmengine's LoggerHook lets every rank write the test metrics file; this one leaves it to rank 0.
# mmengine's CheckpointHook leaves a truncated checkpoint when killed during a save; this one writes atomically.
default_hooks = dict(logger=dict(type='MainProcessLoggerHook'), checkpoint=dict(type='SafeCheckpointHook'))

# Fast training by default: the training crops are all 512x512, so the backbone replays its training forward and
# backward as one pair of CUDA graphs (eager on CPU). Off: model.backbone.cuda_graphs=0. The heads are mmseg's
# UPerHead and FCNHead whose training loss upsamples by matrix products and scores accuracy by argmax (same values;
# mlla_dense/models/decode_heads): their bfloat16 upsample backward and topk cost more than the backbone.
model = dict(
    backbone=dict(
        _delete_=True,
        type='MLLA',
        arch='tiny',
        cuda_graphs=1,
        cuda_graphs_memory_gb=8,
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='data/pretrained/mlla_t_in1k.pth')),
    decode_head=dict(type='UPerHeadFastLoss', in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(type='FCNHeadFastLoss', in_channels=256, num_classes=150))

# paramwise_cfg (no weight decay on norms) in one parameter group per setting instead of one per parameter: the
# same updates in a few multi-tensor launches (mlla_dense/runtime/merged_param_groups.py)
optim_wrapper = dict(constructor='MergedParamGroupsConstructor')
