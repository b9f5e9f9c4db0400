# Design space, forget gate replaced by a positional encoding: absolute position embedding. UperNet 160k, ADE20K.
_base_ = './_base_/upernet_design-space_8xb2-160k_ade20k-512x512.py'

model = dict(backbone=dict(pos_embed=('ape',)))
