"""The official MLLA and VMamba backbones, imported from checkouts the user names, for side-by-side benchmarks.

Nothing of their code is part of this project: the benchmarks import it at run time from
``--official-mlla DIR`` (a clone of https://github.com/LeapLabTHU/MLLA) and ``--official-vmamba DIR`` (a clone of
https://github.com/MzeroMiko/VMamba, with its selective-scan CUDA extension ``selective_scan_cuda_oflex``
built from DIR/kernels/selective_scan and importable). Their files expect old packages (mmdet 2.x's registry,
mmcv 1.x's runner, timm, fvcore); while an official file is imported, small stand-ins take those names in
``sys.modules`` and are removed again afterwards (timm is used itself where it is installed).

The official models get the weights of the mlla_dense model they are compared with (same parameter names), so a
benchmark can also report how far apart their outputs are.
"""
import contextlib
import importlib
import importlib.util
import os
import sys
import types

import torch
from torch import nn

MLLA_FILE = 'downstream/detection/mmdet/models/backbones/mlla.py'
VMAMBA_DIR = 'classification/models'
MLLA_ARCHS = {
    'mlla-t': dict(embed_dim=64, depths=[2, 4, 8, 4], num_heads=[2, 4, 8, 16]),
    'mlla-s': dict(embed_dim=64, depths=[3, 6, 21, 6], num_heads=[2, 4, 8, 16]),
    'mlla-b': dict(embed_dim=96, depths=[3, 6, 21, 6], num_heads=[3, 6, 12, 24]),
}
# The released dense VMamba models (detection/configs/vssm1, segmentation/configs/vssm1).
VMAMBA_COMMON = dict(ssm_d_state=1, ssm_dt_rank='auto', ssm_conv=3, ssm_conv_bias=False, forward_type='v05_noz',
                     mlp_ratio=4.0, downsample_version='v3', patchembed_version='v2', norm_layer='ln2d')
VMAMBA_ARCHS = {
    'vmamba-t': dict(VMAMBA_COMMON, dims=96, depths=[2, 2, 8, 2], ssm_ratio=1.0, drop_path_rate=0.2),
    'vmamba-s': dict(VMAMBA_COMMON, dims=96, depths=[2, 2, 15, 2], ssm_ratio=2.0, drop_path_rate=0.3),
    'vmamba-b': dict(VMAMBA_COMMON, dims=128, depths=[2, 2, 15, 2], ssm_ratio=2.0, drop_path_rate=0.6),
}


class OfficialCodeError(RuntimeError):
    """The named checkout is missing, incomplete, or lacks what the comparison needs."""


def _module(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def _timm_stand_in():
    """``timm.models.layers`` as the official files use it: DropPath, to_2tuple, trunc_normal_."""
    from mmcv.cnn.bricks import DropPath
    from mmengine.model.weight_init import trunc_normal_

    def to_2tuple(x):
        return tuple(x) if isinstance(x, (tuple, list)) else (x, x)

    layers = _module('timm.models.layers', DropPath=DropPath, trunc_normal_=trunc_normal_, to_2tuple=to_2tuple)
    return {'timm': _module('timm', models=_module('timm.models', layers=layers)), 'timm.models': layers,
            'timm.models.layers': layers}


def _fvcore_stand_in():
    """fvcore.nn's names that vmamba.py imports (used only by its FLOP counting, which the benchmarks skip)."""
    def unavailable(*args, **kwargs):
        raise OfficialCodeError('fvcore is not installed: the official FLOP counter is unavailable')
    nn_module = _module('fvcore.nn', FlopCountAnalysis=unavailable, flop_count_str=unavailable,
                        flop_count=unavailable, parameter_count=unavailable)
    return {'fvcore': _module('fvcore', nn=nn_module), 'fvcore.nn': nn_module}


@contextlib.contextmanager
def _stand_ins(modules):
    """Put ``modules`` into sys.modules where the names are free, and take them out again."""
    added = [name for name in modules if name not in sys.modules]
    for name in added:
        sys.modules[name] = modules[name]
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _needs_timm_stand_in():
    try:
        importlib.import_module('timm.models.layers')
        return False
    except ImportError:
        return True


def _package(name, path):
    """An empty package ``name`` whose submodules are looked up in ``path`` (its __init__.py is not run)."""
    package = _module(name, __path__=[path])
    package.__package__ = name
    sys.modules[name] = package
    return package


def _checked_dir(root, flag, relative, repo):
    if not root:
        raise OfficialCodeError(f'{flag} DIR is needed for the official implementation: a clone of {repo}')
    path = os.path.join(root, relative)
    if not os.path.exists(path):
        raise OfficialCodeError(f'{flag} {root!r}: {relative} not found; expected a clone of {repo}')
    return path


def load_mlla_class(root):
    """The official downstream ``MLLA`` class from the LeapLabTHU/MLLA checkout ``root``."""
    path = _checked_dir(root, '--official-mlla', MLLA_FILE, 'https://github.com/LeapLabTHU/MLLA')
    name = '_official_mlla.models.backbones.mlla'
    if name in sys.modules:
        return sys.modules[name].MLLA
    registry = _module('_official_mlla.models.builder',
                       BACKBONES=_module('BACKBONES', register_module=lambda *a, **k: (lambda cls: cls)))
    stand_ins = {
        '_official_mlla.models.builder': registry,
        '_official_mlla.utils': _module('_official_mlla.utils', get_root_logger=lambda *a, **k: None),
        'mmcv.runner': _module('mmcv.runner', _load_checkpoint=lambda *a, **k: {}),
    }
    if _needs_timm_stand_in():
        stand_ins.update(_timm_stand_in())
    for package in ('_official_mlla', '_official_mlla.models', '_official_mlla.models.backbones'):
        _package(package, os.path.dirname(path))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    with _stand_ins(stand_ins):
        spec.loader.exec_module(module)
    sys.modules[name] = module
    return module.MLLA


def load_vmamba_module(root):
    """The official ``classification/models/vmamba.py`` module of the MzeroMiko/VMamba checkout ``root``; raises
    unless its CUDA selective scan (``selective_scan_cuda_oflex``) imports."""
    path = _checked_dir(root, '--official-vmamba', VMAMBA_DIR, 'https://github.com/MzeroMiko/VMamba')
    name = '_official_vmamba_models'
    if name + '.vmamba' in sys.modules:
        return sys.modules[name + '.vmamba']
    try:
        importlib.import_module('selective_scan_cuda_oflex')
    except ImportError as error:
        raise OfficialCodeError(
            f'the official VMamba needs its CUDA selective scan: build it with `pip install .` in '
            f'{os.path.join(root, "kernels/selective_scan")} (import selective_scan_cuda_oflex failed: {error})'
        ) from None
    stand_ins = _fvcore_stand_in()
    if _needs_timm_stand_in():
        stand_ins.update(_timm_stand_in())
    _package(name, path)
    with _stand_ins(stand_ins):
        module = importlib.import_module(name + '.vmamba')
    if not getattr(sys.modules[name + '.csms6s'], 'WITH_SELECTIVESCAN_OFLEX', False):
        raise OfficialCodeError('the official VMamba did not pick up selective_scan_cuda_oflex')
    return module


def build_official(model_name: str, reference: nn.Module, mlla_root=None, vmamba_root=None) -> nn.Module:
    """The official backbone of ``model_name`` ('mlla-t', 'vmamba-s', ...) with the weights of ``reference`` (an
    mlla_dense backbone of the same architecture), on the reference's device, in its training mode."""
    if model_name in MLLA_ARCHS:
        model = load_mlla_class(mlla_root)(drop_path_rate=0.1, **MLLA_ARCHS[model_name])
        expected_missing = ('.attn.rope.rotations',)
    elif model_name in VMAMBA_ARCHS:
        model = load_vmamba_module(vmamba_root).Backbone_VSSM(**VMAMBA_ARCHS[model_name])
        expected_missing = ()
    else:
        raise OfficialCodeError(f'no official implementation is known for {model_name!r}')
    missing, unexpected = model.load_state_dict(reference.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith(expected_missing)]
    if missing or unexpected:
        raise OfficialCodeError(f'the official {model_name} and mlla_dense disagree on parameter names: '
                                f'missing {missing[:5]}, unexpected {unexpected[:5]}')
    device = next(reference.parameters()).device
    return model.to(device).train(reference.training)


def output_difference(ours, official, x: torch.Tensor) -> float:
    """Largest relative difference (max |a - b| / max |b|) between the two models' outputs on ``x``, in eval
    mode and without gradients (so drop path and batch statistics do not differ)."""
    modes = ours.training, official.training
    ours.eval()
    official.eval()
    try:
        with torch.no_grad():
            worst = 0.0
            for a, b in zip(ours(x), official(x)):
                worst = max(worst, float((a.float() - b.float()).abs().max() / b.float().abs().max()))
    finally:
        ours.train(modes[0])
        official.train(modes[1])
    return worst
