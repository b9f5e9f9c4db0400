"""Register one class in the model registries of both mmdet and mmseg.

A backbone defined here must be buildable from a detection config (``default_scope='mmdet'``) and from a
segmentation config (``default_scope='mmseg'``); each scope looks only in its own registry and its parents,
so the class is registered in both.
"""
from mmdet.registry import MODELS as MMDET_MODELS
from mmseg.registry import MODELS as MMSEG_MODELS


def register_backbone(cls):
    """Class decorator: register ``cls`` under its own name in mmdet's and mmseg's MODELS."""
    MMDET_MODELS.register_module(module=cls)
    MMSEG_MODELS.register_module(module=cls)
    return cls
