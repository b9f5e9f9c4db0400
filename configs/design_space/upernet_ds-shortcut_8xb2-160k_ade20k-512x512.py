# Design space, + shortcut: a learned D * v around the attention. UperNet 160k, ADE20K.
_base_ = './_base_/upernet_design-space_8xb2-160k_ade20k-512x512.py'

model = dict(backbone=dict(shortcut=True))
