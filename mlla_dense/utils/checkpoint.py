"""Loading official and OpenMMLab checkpoints into a backbone, strictly and safely.

Official checkpoints of the authors' training code pickle more than tensors (a yacs config, argparse
namespaces, ...). ``weights_only=True`` refuses them, and ``weights_only=False`` would run arbitrary pickled
code and need those libraries installed. Here only the globals torch's weights_only mode allows are
resolved; every other one becomes an inert placeholder class, so the tensors load and nothing foreign runs.

Backbones then load with explicit rules instead of a silent ``strict=False``: known classifier-only keys are
dropped, known new layers may be missing, and anything else that is missing, unexpected or of the wrong
shape is an error naming the keys.
"""
import os.path as osp
import re
from typing import Dict, Iterable, Optional

import torch
from mmengine.logging import print_log

STATE_DICT_KEYS = ('state_dict', 'model', 'module')


class _Placeholder(dict):
    """Inert stand-in for a pickled object whose class is not allowed: keeps its state, runs nothing."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.__dict__['_args'] = args

    def __setstate__(self, state):
        self.__dict__['_state'] = state

    def append(self, item):
        self.__dict__.setdefault('_items', []).append(item)

    def extend(self, items):
        self.__dict__.setdefault('_items', []).extend(items)


def _placeholder(module: str, name: str) -> type:
    return type(name, (_Placeholder,), {'__module__': module, '__qualname__': name})


def _restricted_pickle_module(allowed: Dict[str, object]):
    """A pickle module for torch.load whose Unpickler resolves only ``allowed`` globals (torch's
    weights_only allow-list); every other global becomes an inert placeholder class."""
    import pickle
    import types

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            key = f'{module}.{name}'
            if key in allowed:
                return allowed[key]
            return _placeholder(module, name)

    restricted = types.ModuleType('mlla_dense_restricted_pickle')
    restricted.Unpickler = Unpickler
    restricted.load = lambda file, **kwargs: Unpickler(file, **kwargs).load()
    return restricted


def _torch_allowed_globals() -> Dict[str, object]:
    from torch import _weights_only_unpickler as wo
    return {**wo._get_allowed_globals(), **wo._get_user_allowed_globals()}


def load_checkpoint_file(filename: str, map_location='cpu') -> dict:
    """``torch.load`` as safe as ``weights_only=True``, but pickled objects of other classes (a training
    config, say) become inert placeholders instead of failing the whole load."""
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename!r} does not exist')
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    if not unsafe:
        return torch.load(filename, map_location=map_location, weights_only=True)
    print_log(f'{filename}: loading non-tensor objects of {", ".join(sorted(unsafe))} as inert placeholders',
              logger='current')
    return torch.load(filename, map_location=map_location, weights_only=False,
                      pickle_module=_restricted_pickle_module(_torch_allowed_globals()))


def extract_state_dict(checkpoint, prefix: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint as a flat state dict, restricted to ``prefix`` (which is stripped).

    Accepts OpenMMLab checkpoints ('state_dict'), the official classification checkpoints ('model') and bare
    state dicts; a leading 'module.' (DistributedDataParallel) is removed.
    """
    state_dict = checkpoint
    for key in STATE_DICT_KEYS:
        if isinstance(state_dict, dict) and isinstance(state_dict.get(key), dict):
            state_dict = state_dict[key]
            break
    if not isinstance(state_dict, dict):
        raise TypeError(f'no state dict found in checkpoint of type {type(checkpoint).__name__}')
    state_dict = {re.sub(r'^module\.', '', k): v for k, v in state_dict.items() if torch.is_tensor(v)}
    if prefix:
        if not prefix.endswith('.'):
            prefix += '.'
        selected = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not selected:
            raise KeyError(f'no key of the checkpoint starts with prefix {prefix!r}; '
                           f'first keys: {sorted(state_dict)[:5]}')
        state_dict = selected
    return state_dict


def _matching(keys: Iterable[str], patterns: Iterable[str]):
    return sorted(k for k in keys if any(re.fullmatch(p, k) for p in patterns))


def load_backbone_state_dict(module: torch.nn.Module, state_dict: Dict[str, torch.Tensor],
                             ignore: Iterable[str] = (), may_be_missing: Iterable[str] = (),
                             source: str = 'checkpoint') -> Dict[str, list]:
    """Load ``state_dict`` into ``module``; raise on anything but the expected differences.

    Returns {'ignored': checkpoint keys dropped, 'newly_initialized': module keys the checkpoint lacked}.

    Args:
        ignore: regular expressions (full match) of checkpoint keys to drop, e.g. a classifier head.
        may_be_missing: regular expressions of module keys that the checkpoint may lack (they keep their
            initialization and are reported as newly initialized).
    """
    own = module.state_dict()
    if not any(k in own for k in state_dict) and any(k.startswith('backbone.') for k in state_dict):
        print_log(f'{source}: using the keys under "backbone." (a detector or segmentor checkpoint)',
                  logger='current')
        state_dict = extract_state_dict(state_dict, prefix='backbone.')
    ignored = _matching(state_dict, ignore)
    state_dict = {k: v for k, v in state_dict.items() if k not in set(ignored)}
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                  for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
    if mismatched:
        raise ValueError(f'{source}: shape mismatch for {len(mismatched)} keys:\n  ' + '\n  '.join(mismatched))
    unexpected = sorted(set(state_dict) - set(own))
    missing = sorted(set(own) - set(state_dict))
    new_layers = _matching(missing, may_be_missing)
    missing = sorted(set(missing) - set(new_layers))
    if missing or unexpected:
        raise KeyError(f'{source} does not fit {type(module).__name__}: {len(missing)} missing keys '
                       f'{missing[:20]}, {len(unexpected)} unexpected keys {unexpected[:20]}')
    module.load_state_dict(state_dict, strict=False)
    if ignored:
        print_log(f'{source}: ignored {len(ignored)} keys the backbone does not use ({_summary(ignored)})',
                  logger='current')
    if new_layers:
        print_log(f'{source}: newly initialized (not in the checkpoint): {", ".join(new_layers)}',
                  logger='current')
    return {'ignored': ignored, 'newly_initialized': new_layers}


def _summary(keys, limit=4):
    shown = ', '.join(keys[:limit])
    return shown + (f', ... {len(keys) - limit} more' if len(keys) > limit else '')
