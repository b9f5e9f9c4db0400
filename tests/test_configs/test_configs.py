"""Every config parses, follows the naming convention, builds with the expected size and runs a forward pass."""
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from helpers import ROOT
from mlla_dense.models.backbones.mlla import MLLA
from mlla_dense.models.backbones.vmamba import VMamba

CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '*', '*.py')))
CONFIGS = [c for c in CONFIGS if '_base_' not in c and '/design_space/' not in c]  # design_space: own test file
# Paper numbers: MLLA (NeurIPS 2024) and VMamba (NeurIPS 2024) tables of Mask R-CNN on COCO, UperNet on ADE20K.
PAPER_PARAMS = {'mask-rcnn_mlla-t': 44e6, 'mask-rcnn_mlla-s': 63e6, 'mask-rcnn_mlla-b': 115e6, 'upernet_mlla-b': 128e6,
                'mask-rcnn_vmamba-t': 50e6, 'mask-rcnn_vmamba-s': 70e6, 'mask-rcnn_vmamba-b': 108e6,
                'upernet_vmamba-t': 62e6, 'upernet_vmamba-s': 82e6, 'upernet_vmamba-b': 122e6}
# Backbone sizes measured on the official implementations (MLLA downstream MLLA, VMamba Backbone_VSSM).
ARCH_PARAMS = {('mlla', 't'): 23.88e6, ('mlla', 's'): 42.50e6, ('mlla', 'b'): 95.22e6, ('mlla', 'nano'): 1.94e6,
               ('vmamba', 't'): 29.48e6, ('vmamba', 's'): 49.38e6, ('vmamba', 'b'): 87.54e6}
NAME = re.compile(r'^(mask-rcnn|upernet)_(mlla|vmamba)-(nano|t|s|b)(_fpn)?_[a-z0-9-]+_'
                  r'(coco|ade20k-512x512|shapes|shapes-\d+x\d+)\.py$')


def build(path):
    cfg = Config.fromfile(path)
    scope = cfg.default_scope
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    cfg.model.backbone.init_cfg = None
    return cfg, registry.build(cfg.model)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_all_expected_configs_exist():
    names = {osp.basename(p) for p in CONFIGS}
    expected = {f'mask-rcnn_mlla-{a}_fpn_1x_coco.py' for a in 'tsb'} | {
        f'mask-rcnn_mlla-{a}_fpn_ms-crop-3x_coco.py' for a in 'ts'} | {
        f'upernet_mlla-{a}_8xb2-160k_ade20k-512x512.py' for a in 'tsb'} | {
        f'mask-rcnn_vmamba-{a}_fpn_1x_coco.py' for a in 'tsb'} | {
        f'mask-rcnn_vmamba-{a}_fpn_ms-crop-3x_coco.py' for a in 'ts'} | {
        f'upernet_vmamba-{a}_4xb4-160k_ade20k-512x512.py' for a in 'tsb'}
    assert expected <= names


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_name_follows_convention(path):
    assert NAME.match(osp.basename(path)), osp.basename(path)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_builds_and_runs(path):
    cfg, model = build(path)
    assert cfg.custom_imports.imports == ['mlla_dense']
    assert cfg.default_hooks.logger.type == 'MainProcessLoggerHook' and cfg.default_hooks.logger.interval > 0
    assert cfg.default_hooks.checkpoint.type == 'SafeCheckpointHook'
    name = osp.basename(path)
    family, arch = re.search(r'(mlla|vmamba)-(nano|t|s|b)', name).groups()
    assert isinstance(model.backbone, MLLA if family == 'mlla' else VMamba)
    assert abs(n_params(model.backbone) - ARCH_PARAMS[family, arch]) < 0.01e6
    key = re.split(r'_fpn|_8xb2|_4xb4', name)[0]
    total = n_params(model)
    if key in PAPER_PARAMS:
        assert abs(total - PAPER_PARAMS[key]) / PAPER_PARAMS[key] < 0.02, total
    else:  # no paper number: the whole is its parts
        assert total == sum(n_params(m) for m in model.children())
    model.eval()
    inputs = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        if cfg.default_scope == 'mmseg':
            logits = model(inputs, mode='tensor')
            assert logits.shape[:2] == (1, cfg.model.decode_head.num_classes)
        else:
            from mmdet.structures import DetDataSample
            sample = DetDataSample(metainfo=dict(img_shape=(96, 128), ori_shape=(96, 128),
                                                 batch_input_shape=(96, 128), scale_factor=(1., 1.)))
            results = model.predict(inputs, [sample])
            assert results[0].pred_instances.bboxes.shape[1] == 4


def test_official_hyper_parameters():
    det = Config.fromfile(osp.join(ROOT, 'configs/mlla/mask-rcnn_mlla-t_fpn_1x_coco.py'))
    assert det.optim_wrapper.optimizer.type == 'AdamW' and det.optim_wrapper.optimizer.lr == 1e-4
    assert det.optim_wrapper.optimizer.weight_decay == 0.05
    assert det.optim_wrapper.paramwise_cfg.custom_keys['norm'] == dict(decay_mult=0.)
    assert det.train_cfg.max_epochs == 12 and det.param_scheduler[1].milestones == [8, 11]
    assert det.train_dataloader.batch_size == 2 and det.model.backbone.drop_path_rate == 0.1
    three = Config.fromfile(osp.join(ROOT, 'configs/mlla/mask-rcnn_mlla-t_fpn_ms-crop-3x_coco.py'))
    assert three.train_cfg.max_epochs == 36 and three.param_scheduler[1].milestones == [27, 33]
    assert three.model.backbone.drop_path_rate == 0.3
    seg = Config.fromfile(osp.join(ROOT, 'configs/mlla/upernet_mlla-b_8xb2-160k_ade20k-512x512.py'))
    assert seg.optim_wrapper.optimizer.lr == 6e-5 and seg.optim_wrapper.optimizer.weight_decay == 0.01
    assert seg.param_scheduler[0].end == 1500 and seg.train_cfg.max_iters == 160000
    assert seg.model.backbone.drop_path_rate == 0.5 and seg.train_dataloader.batch_size == 2
    assert seg.data_root == 'data/ade/ADEChallengeData2016' and det.data_root == 'data/coco/'


def test_unknown_config_key_surfaces_mmengine_error():
    cfg = Config.fromfile(osp.join(ROOT, 'configs/mlla/mask-rcnn_mlla-t_fpn_1x_coco.py'))
    cfg.merge_from_dict({'model.backbone.not_an_option': 1})
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    with pytest.raises(TypeError, match='not_an_option'):
        MODELS.build(cfg.model)


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_shipped_configs_train_with_cuda_graphs(path):
    """COCO Mask R-CNN: one capture per shape bucket and buckets in the data preprocessor; UperNet: its fixed crops
    need one capture. Both with a memory cap. The demo configs stay eager."""
    cfg = Config.fromfile(path)
    backbone, name = cfg.model.backbone, osp.basename(path)
    if name.endswith('_coco.py'):
        assert cfg.model.data_preprocessor.type == 'BucketedDetDataPreprocessor'
        assert backbone.cuda_graphs == len(cfg.model.data_preprocessor.buckets) >= 8
    if name.endswith('_coco.py') or name.endswith('_ade20k-512x512.py'):
        assert backbone.cuda_graphs >= 1 and backbone.cuda_graphs_memory_gb == 8
    if '_demo_' in name:
        assert backbone.get('cuda_graphs', 0) == 0


@pytest.mark.parametrize('path', [c for c in CONFIGS if c.endswith(('_coco.py', '_ade20k-512x512.py', '_shapes.py',
                                                                  '_shapes-96x96.py'))], ids=osp.basename)
def test_paramwise_settings_in_merged_parameter_groups(path):
    """The COCO, ADE20K and demo configs build their optimizer with one parameter group per distinct setting."""
    cfg = Config.fromfile(path)
    assert cfg.optim_wrapper.paramwise_cfg and cfg.optim_wrapper.constructor == 'MergedParamGroupsConstructor'


def test_buckets_and_graphs_turn_off_from_the_command_line():
    from mmengine.config import DictAction
    cfg = Config.fromfile(osp.join(ROOT, 'configs/mlla/mask-rcnn_mlla-t_fpn_1x_coco.py'))
    options = DictAction._parse_iterable('[]')
    cfg.merge_from_dict({'model.backbone.cuda_graphs': 0, 'model.data_preprocessor.buckets': options})
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    model = MODELS.build(dict(cfg.model, backbone=dict(cfg.model.backbone, init_cfg=None)))
    assert model.backbone.training_graphs is None and model.data_preprocessor.buckets == ()
