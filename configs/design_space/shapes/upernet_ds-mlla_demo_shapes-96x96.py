# Design space, MLLA's switches and stem at nano size (MLLA-nano). Shapes demo (CPU), UperNet.
_base_ = '../_base_/upernet_design-space_demo_shapes-96x96.py'

model = dict(backbone=dict(macro='mlla', block='mamba-sub', pos_embed=('cpe', 'lepe', 'rope')))
