"""Let mmengine 0.10.7 resume its own checkpoints under torch >= 2.6.

torch >= 2.6 loads with ``weights_only=True`` by default and mmengine 0.10.7 does not pass the argument, so
resuming fails on the non-tensor objects mmengine itself pickles (its HistoryBuffer log buffers, numpy arrays
and scalars, and HistoryBuffer's statistics methods, which pickle as ``getattr(HistoryBuffer, 'mean')``).
Instead of turning the safety off, the exact types mmengine writes are added to torch's allow-list, and
``builtins.getattr`` is resolved to a version that only looks up those statistics methods; any other object
in a checkpoint is still refused.
"""
import pickle

import numpy as np
import torch


def _numpy_globals():
    core = np._core if hasattr(np, '_core') else np.core
    dtype_classes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32,
                                                   np.int16, np.int8, np.uint8, np.bool_)]
    return [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype, *dtype_classes]


_BUILTIN_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj, name):
    """``getattr`` restricted to HistoryBuffer's statistics methods.

    The built-in four are listed explicitly: HistoryBuffer only fills ``_statistics_methods`` when a first
    instance is created, which a fresh test process has not done before loading its checkpoint.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed = set(_BUILTIN_STATISTICS) | set(HistoryBuffer._statistics_methods)
    if obj is not HistoryBuffer or name not in allowed:
        raise pickle.UnpicklingError(f'getattr({obj!r}, {name!r}) is not allowed while loading a checkpoint')
    return getattr(obj, name)


def mmengine_checkpoint_globals():
    """The non-tensor globals found in checkpoints that mmengine's Runner saves."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'), *_numpy_globals()]


def allow_mmengine_checkpoints() -> None:
    """Add mmengine's checkpoint types to torch's weights_only allow-list (idempotent)."""
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
