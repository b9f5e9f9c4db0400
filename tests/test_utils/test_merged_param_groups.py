"""MergedParamGroupsConstructor: the default constructor's paramwise settings in few groups, the same updates."""
import copy

import torch
from mmengine.optim import build_optim_wrapper

import mlla_dense  # noqa: F401  (registers the constructor)
from mlla_dense.models.backbones.mlla import MLLA
from mlla_dense.runtime.merged_param_groups import merge_param_groups

# what the COCO and ADE20K configs ask for (mmdet's / mmseg's Swin settings)
OPTIM_WRAPPER = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
                     paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.), 'cpe': dict(lr_mult=0.5)}))


def settings_by_parameter(optimizer):
    return {id(p): {k: v for k, v in group.items() if k != 'params'}
            for group in optimizer.param_groups for p in group['params']}


def test_same_settings_per_parameter_in_few_groups_and_same_updates():
    torch.manual_seed(0)
    model = MLLA(arch='nano', drop_path_rate=0.0)
    other = copy.deepcopy(model)
    default = build_optim_wrapper(model, copy.deepcopy(OPTIM_WRAPPER))
    merged = build_optim_wrapper(other, dict(copy.deepcopy(OPTIM_WRAPPER), constructor='MergedParamGroupsConstructor'))
    params, others = list(model.parameters()), list(other.parameters())
    assert len(default.optimizer.param_groups) == len(params)  # why the constructor exists
    by_param = settings_by_parameter(default.optimizer)
    expected = {id(q): by_param[id(p)] for p, q in zip(params, others)}
    assert settings_by_parameter(merged.optimizer) == expected
    distinct = {repr(sorted(s.items())) for s in expected.values()}
    # norms without decay, cpe at half the lr (they hold no norm), the rest
    assert len(distinct) == 3 and len(merged.optimizer.param_groups) == 3
    for step in range(3):
        grads = [torch.randn_like(p) for p in params]
        for wrapper, ps in ((default, params), (merged, others)):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            wrapper.step()
    assert all(torch.equal(p, q) for p, q in zip(params, others))


def test_merge_keeps_first_appearance_order():
    a, b, c, d = (torch.nn.Parameter(torch.zeros(1)) for _ in range(4))
    groups = [dict(params=[a], lr=1.0), dict(params=[b], lr=2.0), dict(params=[c], lr=1.0),
              dict(params=[d], lr=1.0, weight_decay=0.0)]
    merged = merge_param_groups(groups)
    assert [[id(p) for p in g['params']] for g in merged] == [[id(a), id(c)], [id(b)], [id(d)]]
    assert [g['lr'] for g in merged] == [1.0, 2.0, 1.0] and merged[2]['weight_decay'] == 0.0
