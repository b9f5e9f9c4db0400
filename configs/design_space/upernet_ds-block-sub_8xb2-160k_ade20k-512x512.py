# Design space, + block design sub: Mamba's block replaces the attention block, the MLP stays (MLLA's block). UperNet
# 160k, ADE20K.
_base_ = './_base_/upernet_design-space_8xb2-160k_ade20k-512x512.py'

model = dict(backbone=dict(block='mamba-sub'))
