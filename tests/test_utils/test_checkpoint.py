"""Official checkpoints load into MLLA unchanged; anything unexpected is an error naming the keys."""
import pickle
import sys
import types

import pytest
import torch

from mlla_dense.models.backbones.mlla import MLLA
from mlla_dense.utils.checkpoint import load_checkpoint_file

SMALL = dict(embed_dim=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))


def reference_weights(seed=1):
    model = MLLA(**SMALL)
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
            for k, v in model.state_dict().items()}


def classification_checkpoint(weights):
    """What the official ImageNet training saves: 'model' with head, final norm and RoPE buffers, plus a
    config object of a library (yacs) that is not installed here."""
    model_sd = {k: v for k, v in weights.items() if not k.startswith('norm')}
    for i in range(4):
        model_sd[f'layers.{i}.blocks.0.attn.rope.rotations'] = torch.randn(14, 14, 8 * 2 ** i, 2)
    model_sd.update({'norm.weight': torch.ones(256), 'norm.bias': torch.zeros(256),
                     'head.weight': torch.randn(1000, 256), 'head.bias': torch.zeros(1000)})
    return {'model': model_sd, 'epoch': 299, 'max_accuracy': 83.5, 'config': fake_foreign_object()}


def fake_foreign_object():
    module = types.ModuleType('yacs_not_installed.config')

    class CfgNode(dict):
        pass

    CfgNode.__module__, CfgNode.__qualname__ = module.__name__, 'CfgNode'
    module.CfgNode = CfgNode
    sys.modules['yacs_not_installed'] = types.ModuleType('yacs_not_installed')
    sys.modules[module.__name__] = module
    node = CfgNode(MODEL='mlla_t')
    node.frozen = True
    return node


def save(obj, path):
    torch.save(obj, path)
    sys.modules.pop('yacs_not_installed.config', None)
    sys.modules.pop('yacs_not_installed', None)
    return str(path)


def build_with(path, **init):
    model = MLLA(**SMALL, init_cfg=dict(type='Pretrained', checkpoint=path, **init))
    model.init_weights()
    return model


def assert_loaded(model, weights):
    for key, value in model.state_dict().items():
        if key in weights and not key.startswith('norm'):
            assert torch.equal(value, weights[key]), key


def test_foreign_pickled_objects_become_placeholders(tmp_path):
    path = save(classification_checkpoint(reference_weights()), tmp_path / 'cls.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    checkpoint = load_checkpoint_file(path)
    assert checkpoint['epoch'] == 299
    assert type(checkpoint['config']).__name__ == 'CfgNode'
    assert type(checkpoint['config']).__module__ == 'yacs_not_installed.config'


def test_classification_checkpoint(tmp_path):
    weights = reference_weights()
    path = save(classification_checkpoint(weights), tmp_path / 'cls.pth')
    model = build_with(path)
    assert_loaded(model, weights)
    assert model.load_report['newly_initialized'] == [f'norm{i}.{p}' for i in range(4) for p in ('bias', 'weight')]
    ignored = model.load_report['ignored']
    assert {'head.weight', 'head.bias', 'norm.weight', 'norm.bias'} <= set(ignored)
    assert sum(k.endswith('rope.rotations') for k in ignored) == 4 and len(ignored) == 8


@pytest.mark.parametrize('prefix', ['backbone.', 'backbone', None])
def test_detection_checkpoint(tmp_path, prefix):
    weights = reference_weights()
    state_dict = {f'backbone.{k}': v for k, v in weights.items()}
    state_dict['backbone.layers.0.blocks.0.attn.rope.rotations'] = torch.randn(56, 56, 16, 2)
    state_dict['neck.lateral_convs.0.conv.weight'] = torch.randn(256, 32, 1, 1)
    path = save({'state_dict': state_dict, 'meta': {'epoch': 12}}, tmp_path / 'det.pth')
    init = {} if prefix is None else {'prefix': prefix}
    model = build_with(path, **init)
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    assert model.load_report['newly_initialized'] == []


def test_shape_mismatch_names_the_keys(tmp_path):
    weights = reference_weights()
    weights['layers.1.blocks.0.attn.qk.weight'] = torch.randn(100, 64)
    path = save({'state_dict': weights}, tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match=r'layers\.1\.blocks\.0\.attn\.qk\.weight: checkpoint \(100, 64\)'):
        build_with(path)


def test_missing_and_unexpected_keys_raise(tmp_path):
    weights = reference_weights()
    del weights['layers.2.blocks.0.mlp.fc1.weight']
    weights['layers.2.blocks.0.extra.weight'] = torch.zeros(1)
    path = save(weights, tmp_path / 'partial.pth')
    with pytest.raises(KeyError, match=r'layers\.2\.blocks\.0\.mlp\.fc1\.weight.*layers\.2\.blocks\.0\.extra'):
        build_with(path)


def test_wrong_prefix(tmp_path):
    path = save({'state_dict': {f'backbone.{k}': v for k, v in reference_weights().items()}}, tmp_path / 'd.pth')
    with pytest.raises(KeyError, match="prefix 'encoder.'"):
        build_with(path, prefix='encoder.')


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match='init_cfg=None'):
        build_with(str(tmp_path / 'mlla_t_in1k.pth'))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_pickled_code_does_not_run(tmp_path):
    """A checkpoint whose pickle calls a function (here open(..., 'w')) loads with a placeholder instead."""
    marker = tmp_path / 'created_by_pickle'
    path = save({'state_dict': reference_weights(), 'payload': _Exploit(str(marker))}, tmp_path / 'evil.pth')
    checkpoint = load_checkpoint_file(path)
    assert not marker.exists()
    assert type(checkpoint['payload']).__name__ == 'open'
