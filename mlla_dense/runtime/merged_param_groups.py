"""An optimizer-wrapper constructor that applies ``paramwise_cfg`` as mmengine's default one does, then merges
the parameter groups whose settings are equal.

mmengine's default constructor makes one parameter group per parameter whenever ``paramwise_cfg`` is set (the
COCO and ADE20K configs set it to exempt norms from weight decay), and PyTorch's multi-tensor AdamW then runs its
dozen launches per group: for UperNet MLLA-T, hundreds of groups whose update cost more host time than the
backbone's replayed forward and backward (benchmarks/NOTES.md). Merged, the same settings give one group per
distinct (lr, weight decay, ...) and the same update of every parameter. Checkpoints keep the optimizer state
per group, so one written with per-parameter groups does not resume under this constructor.
"""
from typing import List

from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn


def merge_param_groups(groups: List[dict]) -> List[dict]:
    """``groups`` with those of equal settings (every key but 'params') joined, in order of first appearance,
    their parameters in their original order."""
    merged = {}
    for group in groups:
        key = repr(sorted((name, value) for name, value in group.items() if name != 'params'))
        if key in merged:
            merged[key]['params'].extend(group['params'])
        else:
            merged[key] = dict(group, params=list(group['params']))
    return list(merged.values())


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MergedParamGroupsConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` (same ``paramwise_cfg``) with parameter groups of equal settings
    merged; config: ``optim_wrapper = dict(constructor='MergedParamGroupsConstructor', ...)``."""

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs) -> None:
        super().add_params(params, module, prefix, **kwargs)
        if not prefix:  # the outermost call, after every submodule's parameters were added
            params[:] = merge_param_groups(params)
