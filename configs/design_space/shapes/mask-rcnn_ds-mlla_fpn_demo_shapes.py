# Design space, MLLA's switches and stem at nano size (MLLA-nano). Shapes demo (CPU), Mask R-CNN.
_base_ = '../_base_/mask-rcnn_design-space_fpn_demo_shapes.py'

model = dict(backbone=dict(macro='mlla', block='mamba-sub', pos_embed=('cpe', 'lepe', 'rope')))
