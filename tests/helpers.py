"""Shared helpers of the tests: paths, a tiny generated shapes dataset, config overrides pointing at it, fixed
drop-path masks and relative errors for the fused-block tests."""
import contextlib
import os
import os.path as osp
import subprocess
import sys

import torch

from mlla_dense.datasets.shapes import ShapesConfig, write_shapes_dataset

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DET_DEMO = osp.join(ROOT, 'configs/shapes/mask-rcnn_mlla-nano_fpn_demo_shapes.py')
SEG_DEMO = osp.join(ROOT, 'configs/shapes/upernet_mlla-nano_demo_shapes-96x96.py')


def make_tiny_shapes(path, num_train=16, num_val=4, seed=0):
    write_shapes_dataset(str(path), num_train, num_val, seed=seed,
                         cfg=ShapesConfig(min_size=64, max_size=96, max_objects=2))
    return str(path)


def data_options(root, scope):
    """--cfg-options entries that point a shapes config at ``root`` (with a trailing slash)."""
    root = root.rstrip('/') + '/'
    opts = [f'{split}_dataloader.dataset.data_root={root}' for split in ('train', 'val', 'test')]
    opts += [f'{split}_dataloader.num_workers=0' for split in ('train', 'val', 'test')]
    opts += [f'{split}_dataloader.persistent_workers=False' for split in ('train', 'val', 'test')]
    if scope == 'mmdet':
        ann = root + 'annotations/instances_val.json'
        opts += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']
    return opts


def run(args, cwd=ROOT, env=None, timeout=900):
    """Run a command with this interpreter's environment; returns the CompletedProcess (text output)."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    if args[0] == 'python':
        args = [sys.executable] + args[1:]
    return subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def assert_one_graph_matching_eager(fn, inputs, backend):
    """``fn(*inputs)`` (a scalar) traces into one torch.compile graph without breaks, and the gradients of its
    compiled version (``backend``, fullgraph) equal eager's within 1e-3 relative L2."""
    import torch
    explanation = torch._dynamo.explain(fn)(*inputs)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    leaves = [t.requires_grad_() for t in inputs]
    eager = torch.autograd.grad(fn(*leaves), leaves)
    compiled = torch.autograd.grad(torch.compile(fn, fullgraph=True, backend=backend)(*leaves), leaves)
    for a, b in zip(eager, compiled):
        assert ((b.double() - a.double()).norm() / a.double().norm()).item() < 1e-3


class FixedDropPath(torch.nn.Module):
    """mmcv's DropPath with given masks: call i uses keep[i % 2] (a block's first branch, then its second)."""

    def __init__(self, keep, drop_prob):
        super().__init__()
        self.keep, self.drop_prob, self.calls = keep, drop_prob, 0

    def forward(self, y):
        mask = self.keep[self.calls % 2].to(y.dtype).view(-1, *[1] * (y.dim() - 1))
        self.calls += 1
        return y.div(1 - self.drop_prob) * mask


def rel_err(a, b):
    """Relative L2 distance of a from b, in float64."""
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@contextlib.contextmanager
def tf32_off():
    """Float32 matmuls and convolutions in full float32 within (TF32 off), restored after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
