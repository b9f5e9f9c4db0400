# The shapes demo's UperNet (configs/shapes) with a nano-sized design-space backbone: the baseline's switches,
# which the rows of configs/design_space/shapes/ change. Trains from scratch on a CPU. Its decode head keeps the 64
# channels with which the rows' smoke results were measured (the demo's is 48 since).
_base_ = '../../shapes/upernet_mlla-nano_demo_shapes-96x96.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='LinearAttentionDesignSpace',  # every switch at its default: the linear-attention baseline
        arch='nano',
        drop_path_rate=0.0,
        init_cfg=None),
    decode_head=dict(channels=64))
