# Design space, - normalization: no division by the attention's normalizer. UperNet 160k, ADE20K.
_base_ = './_base_/upernet_design-space_8xb2-160k_ade20k-512x512.py'

model = dict(backbone=dict(attn_norm=False))
