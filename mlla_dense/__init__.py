"""mlla_dense: MLLA and VMamba backbones for mmdet 3.x and mmsegmentation 1.x, with Triton kernels.

Importing the package registers every backbone in both registries, the shapes demo's augmentations
(RandomUnsharpMask), MainProcessLoggerHook (a multi-GPU-safe LoggerHook) and SafeCheckpointHook (checkpoints that
survive a kill), MergedParamGroupsConstructor (paramwise_cfg without one parameter group per parameter), and
lets mmengine resume its own checkpoints under torch >= 2.6 (see :mod:`mlla_dense.utils.torch_load`).
"""
from .datasets import transforms  # noqa: F401  (registers the shapes demo's augmentations)
from .utils.main_process_logger_hook import MainProcessLoggerHook  # noqa: F401  (registers the hook)
from .utils.safe_checkpoint_hook import SafeCheckpointHook  # noqa: F401  (registers the hook)
from .utils.torch_load import allow_mmengine_checkpoints
from .runtime.merged_param_groups import MergedParamGroupsConstructor  # noqa: F401  (registers the constructor)
from .models import *  # noqa: F401,F403  (registers the backbones)

__version__ = '0.1.0'

allow_mmengine_checkpoints()
