"""tools/official_models.py: importing an official checkout with stand-ins for its old imports, copying our weights
into it, and the errors when a checkout is missing, incomplete or disagrees with ours.

The official code itself is not in this repository: a stand-in checkout is written here whose file imports what
the official downstream MLLA file imports (mmdet 2.x's registry through relative imports, mmcv 1.x's runner,
timm) and defines ``MLLA`` on top of ours, so the whole loading path runs."""
import sys

import pytest
import torch

from helpers import ROOT

sys.path.insert(0, f'{ROOT}/tools')
import official_models  # noqa: E402
from official_models import OfficialCodeError, build_official, load_vmamba_module, output_difference  # noqa: E402

from mlla_dense.models.backbones.mlla import MLLA  # noqa: E402

STAND_IN = '''
import torch
from timm.models.layers import DropPath, to_2tuple, trunc_normal_
from ..builder import BACKBONES
from ...utils import get_root_logger
from mmcv.runner import _load_checkpoint
from mlla_dense.models.backbones.mlla import MLLA as _Ours

assert callable(to_2tuple) and callable(trunc_normal_) and DropPath is not None


@BACKBONES.register_module()
class MLLA(_Ours):
    def __init__(self, img_size=224, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), **kwargs):
        super().__init__(embed_dim=embed_dim, depths=depths, num_heads=num_heads, **kwargs)
        EXTRA
'''


def stand_in_checkout(root, monkeypatch, extra='pass'):
    path = root / official_models.MLLA_FILE
    path.parent.mkdir(parents=True)
    path.write_text(STAND_IN.replace('EXTRA', extra))
    monkeypatch.setitem(official_models.MLLA_ARCHS, 'mlla-nano',
                        dict(embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8]))
    for name in [m for m in sys.modules if m.startswith('_official_mlla')]:
        monkeypatch.delitem(sys.modules, name)
    return str(root)


def test_official_file_gets_our_weights(tmp_path, monkeypatch):
    root = stand_in_checkout(tmp_path, monkeypatch)
    torch.manual_seed(0)
    ours = MLLA(arch='nano').train()
    official = build_official('mlla-nano', ours, root)
    assert type(official).__module__ == '_official_mlla.models.backbones.mlla' and official.training
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), official.state_dict().values()))
    assert output_difference(ours, official, torch.randn(1, 3, 32, 48)) == 0.0
    assert ours.training and official.training
    # the stand-ins were only there while the file was imported
    assert 'mmcv.runner' not in sys.modules and '_official_mlla.utils' not in sys.modules


def test_parameter_names_that_disagree_are_an_error(tmp_path, monkeypatch):
    root = stand_in_checkout(tmp_path, monkeypatch, "self.extra = torch.nn.Linear(2, 2)")
    with pytest.raises(OfficialCodeError, match=r"disagree on parameter names.*extra\.weight"):
        build_official('mlla-nano', MLLA(arch='nano'), root)


def test_missing_checkouts_are_clear_errors(tmp_path):
    ours = MLLA(arch='nano')
    with pytest.raises(OfficialCodeError, match='--official-mlla DIR is needed'):
        build_official('mlla-t', ours, None)
    with pytest.raises(OfficialCodeError, match='not found; expected a clone of https://github.com/LeapLabTHU/MLLA'):
        build_official('mlla-t', ours, str(tmp_path))
    (tmp_path / official_models.VMAMBA_DIR).mkdir(parents=True)
    with pytest.raises(OfficialCodeError, match='selective_scan_cuda_oflex'):
        load_vmamba_module(str(tmp_path))
    with pytest.raises(OfficialCodeError, match='no official implementation'):
        build_official('resnet50', ours, str(tmp_path))
