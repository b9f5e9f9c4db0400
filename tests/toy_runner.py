"""Test helper: an mmengine Runner around a one-layer model on random data, for checkpoint and resume tests."""
import uuid

import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn


class ToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, inputs, targets=None, mode='loss'):
        inputs = torch.stack(inputs) if isinstance(inputs, list) else inputs
        loss = (self.linear(inputs).squeeze(-1) - torch.stack(targets)).square().mean()
        return {'loss': loss}


class ToyDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        gen = torch.Generator().manual_seed(index)
        return dict(inputs=torch.randn(4, generator=gen), targets=torch.randn((), generator=gen))


def make_runner(work_dir, max_iters, resume=False, checkpoint=None, custom_hooks=None):
    """An iteration-based Runner saving a checkpoint every iteration (``checkpoint``: the hook's config). Each
    runner has an experiment name of its own: mmengine keys its MessageHub (best scores and the like) by that name,
    which defaults to a timestamp that two runners of one second share."""
    checkpoint = checkpoint or dict(type='CheckpointHook', interval=1, by_epoch=False)
    return Runner(
        model=ToyModel(), work_dir=str(work_dir), resume=resume,
        train_dataloader=dict(dataset=ToyDataset(), sampler=dict(type='DefaultSampler', shuffle=True),
                              batch_size=2, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1], by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=checkpoint, logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=custom_hooks, default_scope='mmengine', randomness=dict(seed=0),
        experiment_name=f'toy_{uuid.uuid4().hex}')
