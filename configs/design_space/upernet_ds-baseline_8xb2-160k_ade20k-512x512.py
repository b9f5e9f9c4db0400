# Design space, the linear-attention baseline: Swin-T with linear attention (every switch at its default). UperNet
# 160k, ADE20K.
_base_ = './_base_/upernet_design-space_8xb2-160k_ade20k-512x512.py'
