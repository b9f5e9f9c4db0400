_base_ = './mask-rcnn_mlla-t_fpn_ms-crop-3x_coco.py'

# The official MLLA-S 3x config keeps drop_path_rate 0.3, as for MLLA-T.
model = dict(
    backbone=dict(arch='small', init_cfg=dict(checkpoint='data/pretrained/mlla_s_in1k.pth')))
