"""configs/design_space/ reads as the paper's table: one row per design, each a Mask R-CNN (COCO) and an UperNet
(ADE20K) config plus their shapes-demo versions, each differing from the shared base by backbone switches only;
every one builds in its scope (mmdet, mmseg), the shapes versions also run a forward pass."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from helpers import ROOT
from mlla_dense.models.backbones.design_space import LinearAttentionDesignSpace

FOLDER = osp.join(ROOT, 'configs', 'design_space')
ROWS = ('baseline', 'input-gate', 'forget-gate', 'shortcut', 'no-norm', 'single-head', 'block-all', 'block-sub',
        'ape', 'lepe', 'cpe', 'rope', 'mlla')
TASKS = {'det': 'mask-rcnn_ds-{}_fpn_1x_coco.py', 'seg': 'upernet_ds-{}_8xb2-160k_ade20k-512x512.py',
         'det-shapes': 'shapes/mask-rcnn_ds-{}_fpn_demo_shapes.py',
         'seg-shapes': 'shapes/upernet_ds-{}_demo_shapes-96x96.py'}
# What the MLLA row changes besides switches: MLLA-T's widths reach the neck / heads.
MLLA_SIZES = {'model.neck.in_channels', 'model.decode_head.in_channels', 'model.auxiliary_head.in_channels'}


def path(row, task):
    return osp.join(FOLDER, TASKS[task].format(row))


def differences(a, b, prefix=''):
    """Dotted keys whose values differ between two config dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return set().union(*(differences(a.get(k), b.get(k), f'{prefix}{k}.') for k in keys)) if keys else set()
    return set() if a == b else {prefix.rstrip('.')}


def test_folder_is_the_table():
    expected = {path(row, task) for row in ROWS for task in TASKS}
    found = set(glob.glob(osp.join(FOLDER, '*.py')) + glob.glob(osp.join(FOLDER, 'shapes', '*.py')))
    assert found == expected


@pytest.mark.parametrize('task', TASKS)
@pytest.mark.parametrize('row', ROWS[1:])
def test_rows_differ_from_the_baseline_by_switches_only(row, task):
    changed = differences(Config.fromfile(path(row, task)).to_dict(), Config.fromfile(path('baseline', task)).to_dict())
    assert changed and all(k.startswith('model.backbone.') or (row == 'mlla' and k in MLLA_SIZES) for k in changed), \
        changed


def build(config):
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    cfg.model.backbone.init_cfg = None
    return cfg, registry.build(cfg.model)


# Every row's full-size detector; the segmentors of the baseline and MLLA rows (the other rows add to the
# baseline's segmentor switches that the detectors and the shapes segmentors build with).
FULL_SIZE = [(row, 'det') for row in ROWS] + [('baseline', 'seg'), ('mlla', 'seg')]


@pytest.mark.parametrize('row,task', FULL_SIZE)
def test_full_size_rows_build(row, task):
    cfg, model = build(path(row, task))
    assert cfg.default_scope == ('mmdet' if task == 'det' else 'mmseg')
    assert isinstance(model.backbone, LinearAttentionDesignSpace)
    assert model.backbone.num_features[0] == (64 if row == 'mlla' else 96)


@pytest.mark.parametrize('task', ['det-shapes', 'seg-shapes'])
@pytest.mark.parametrize('row', ROWS)
def test_shapes_rows_build_and_run(row, task):
    cfg, model = build(path(row, task))
    model.eval()
    inputs = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        if cfg.default_scope == 'mmseg':
            assert model(inputs, mode='tensor').shape[:2] == (1, 6)
        else:
            from mmdet.structures import DetDataSample
            sample = DetDataSample(metainfo=dict(img_shape=(64, 96), ori_shape=(64, 96), batch_input_shape=(64, 96),
                                                 scale_factor=(1., 1.)))
            assert model.predict(inputs, [sample])[0].pred_instances.bboxes.shape[1] == 4


def test_mlla_row_is_mlla_t():
    """The MLLA row's backbone is MLLA-T, parameter for parameter (so its official checkpoint loads)."""
    from mlla_dense.models.backbones.mlla import MLLA
    _, model = build(path('mlla', 'det'))
    mlla = MLLA(arch='tiny')
    assert {k: v.shape for k, v in model.backbone.state_dict().items()} == \
        {k: v.shape for k, v in mlla.state_dict().items()}
