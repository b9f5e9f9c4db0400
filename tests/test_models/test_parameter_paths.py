"""ParameterPaths reads what attribute access reads: parameters, swapped-in aliases, replaced submodules,
parametrized weights and missing biases."""
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils import parametrize

from mlla_dense.models.layers.parameter_paths import ParameterPaths

NAMES = ('norm.weight', 'op.proj.weight', 'op.proj.bias', 'op.inner.fc.weight')


def _module():
    op = nn.Module()
    op.proj = nn.Linear(3, 4, bias=False)
    op.inner = nn.Module()
    op.inner.fc = nn.Linear(4, 4)
    root = nn.Module()
    root.norm = nn.LayerNorm(3)
    root.op = op
    return root


def _by_attributes(module):
    return [module.norm.weight, module.op.proj.weight, module.op.proj.bias, module.op.inner.fc.weight]


def test_reads_the_same_tensors_as_attribute_access():
    module = _module()
    read = ParameterPaths(NAMES)(module)
    assert read[2] is None
    assert all(a is b for a, b in zip(read, _by_attributes(module)))


def test_reads_a_replaced_submodule_and_a_parametrized_weight():
    module, paths = _module(), ParameterPaths(NAMES)
    paths(module)
    module.op.inner = nn.Module()
    module.op.inner.fc = nn.Linear(4, 4)
    parametrize.register_parametrization(module.op.proj, 'weight', _Doubled())
    read = paths(module)
    assert read[3] is module.op.inner.fc.weight
    assert torch.equal(read[1], 2 * module.op.proj.parametrizations.weight.original)


def test_reads_aliases_swapped_in_by_functional_call():
    module, paths = _module(), ParameterPaths(NAMES)
    aliases = {name: p.view_as(p) for name, p in module.named_parameters()}
    seen = []

    def forward(x):
        seen.extend(paths(module))
        return x

    module.forward = forward
    functional_call(module, aliases, (torch.zeros(1),))
    assert seen[0] is aliases['norm.weight'] and seen[3] is aliases['op.inner.fc.weight']
    assert paths(module)[0] is module.norm.weight


class _Doubled(nn.Module):
    def forward(self, w):
        return 2 * w
