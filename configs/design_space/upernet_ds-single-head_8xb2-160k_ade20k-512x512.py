# Design space, - multi-head design: one head whose queries and keys have 16 channels (Mamba's state size). UperNet
# 160k, ADE20K.
_base_ = './_base_/upernet_design-space_8xb2-160k_ade20k-512x512.py'

model = dict(backbone=dict(num_heads=1, key_dim=16))
