# Design space, + block design all: Mamba's block replaces the whole block (2x wider inside, no MLP). UperNet 160k,
# ADE20K.
_base_ = './_base_/upernet_design-space_8xb2-160k_ade20k-512x512.py'

model = dict(backbone=dict(block='mamba-all', expand=2.0))
