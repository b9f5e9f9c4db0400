# Design space, + forget gate: a data-dependent decay per head (Mamba-2's form) along the four SS2D directions.
# UperNet 160k, ADE20K.
_base_ = './_base_/upernet_design-space_8xb2-160k_ade20k-512x512.py'

model = dict(backbone=dict(forget_gate='mamba2', scan='four_directions'))
