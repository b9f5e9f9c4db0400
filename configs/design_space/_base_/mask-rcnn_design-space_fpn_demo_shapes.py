# The shapes demo's Mask R-CNN (configs/shapes) with a nano-sized design-space backbone (32 channels, depths
# 1-1-2-1, heads 1-2-4-8): the baseline's switches, which the rows of configs/design_space/shapes/ change. Trains
# from scratch on a CPU (python tools/train.py CONFIG); tools/design_space_table.py --train runs a short version.
_base_ = '../../shapes/mask-rcnn_mlla-nano_fpn_demo_shapes.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='LinearAttentionDesignSpace',  # every switch at its default: the linear-attention baseline
        arch='nano',
        drop_path_rate=0.0,
        init_cfg=None))
