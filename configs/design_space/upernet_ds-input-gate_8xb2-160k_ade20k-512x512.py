# Design space, + input gate: values scaled by softplus(W x + b) per channel (Mamba's Delta). UperNet 160k, ADE20K.
_base_ = './_base_/upernet_design-space_8xb2-160k_ade20k-512x512.py'

model = dict(backbone=dict(input_gate=True))
