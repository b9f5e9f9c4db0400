"""Command-line tools: --help, bad input, image_demo, browse_dataset, make_shapes, get_flops."""
import glob
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from helpers import DET_DEMO, ROOT, SEG_DEMO, make_tiny_shapes, run

# official_models.py is a module the benchmarks import, not a command
PY_TOOLS = sorted(t for t in glob.glob(osp.join(ROOT, 'tools/*.py')) if not t.endswith('official_models.py'))
SH_TOOLS = sorted(glob.glob(osp.join(ROOT, 'tools/*.sh')))


@pytest.mark.parametrize('tool', PY_TOOLS + SH_TOOLS, ids=osp.basename)
def test_help(tool):
    result = run(['python', tool, '--help'] if tool.endswith('.py') else ['bash', tool, '--help'])
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'usage' in result.stdout.lower()


@pytest.mark.parametrize('config', [DET_DEMO, SEG_DEMO], ids=['det', 'seg'])
def test_missing_dataset_shows_layout(tmp_path, config):
    result = run(['python', 'tools/train.py', config, '--work-dir', str(tmp_path),
                  '--cfg-options', f'train_dataloader.dataset.data_root={tmp_path}/absent/'])
    assert result.returncode != 0
    assert 'dataset not found' in result.stderr and 'Expected layout' in result.stderr
    assert 'tools/make_shapes.py' in result.stderr


def test_missing_coco_shows_layout(tmp_path):
    config = osp.join(ROOT, 'configs/mlla/mask-rcnn_mlla-t_fpn_1x_coco.py')
    result = run(['python', 'tools/train.py', config, '--work-dir', str(tmp_path),
                  '--cfg-options', f'train_dataloader.dataset.data_root={tmp_path}/coco/'])
    assert result.returncode != 0 and 'instances_train2017.json' in result.stderr and 'cocodataset.org' in result.stderr


@pytest.mark.parametrize('config', [DET_DEMO, SEG_DEMO], ids=['det', 'seg'])
def test_image_demo_without_checkpoint_writes_png(tmp_path, config):
    data = make_tiny_shapes(tmp_path / 'shapes', num_train=2, num_val=1)
    image = osp.join(data, 'images/val/val_000000.jpg')
    result = run(['python', 'tools/image_demo.py', image, config, '--out-dir', str(tmp_path / 'out'),
                  '--device', 'cpu'])
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'random' in result.stderr
    pngs = glob.glob(str(tmp_path / 'out/vis/*.png'))
    assert len(pngs) == 1 and os.path.getsize(pngs[0]) > 1000


@pytest.mark.parametrize('split', ['train', 'val'])
@pytest.mark.parametrize('config', [DET_DEMO, SEG_DEMO], ids=['det', 'seg'])
def test_browse_dataset_draws_the_ground_truth(tmp_path, config, split):
    """One PNG per sample after the split's pipeline (train: boxes and masks as the pipeline leaves them, flipped
    images; val: a segmentation label map loaded at the original size). On val, whose pipeline is not random,
    the PNG differs from the image itself where the ground truth is drawn."""
    data = make_tiny_shapes(tmp_path / 'shapes', num_train=3, num_val=2)
    result = run(['python', 'tools/browse_dataset.py', config, '--split', split, '--out-dir', str(tmp_path / 'out'),
                  '--num', '2', '--cfg-options', f'{split}_dataloader.dataset.data_root={data}/'])
    assert result.returncode == 0, result.stderr[-3000:]
    pngs = sorted(glob.glob(str(tmp_path / 'out/*.png')))
    assert [osp.basename(p) for p in pngs] == [f'{split}_000000.png', f'{split}_000001.png']
    assert 'LocalVisBackend' not in result.stderr
    if split == 'val':
        for png in pngs:
            drawn = cv2.imread(png)
            image = cv2.imread(osp.join(data, 'images/val', osp.basename(png)[:-4] + '.jpg'))
            image = cv2.resize(image, drawn.shape[1::-1], interpolation=cv2.INTER_LINEAR)
            assert (np.abs(drawn.astype(int) - image).max(-1) > 40).mean() > 0.02


def test_make_shapes_cli(tmp_path):
    out = tmp_path / 'shapes'
    ok = run(['python', 'tools/make_shapes.py', '--out', str(out), '--num-train', '3', '--num-val', '2'])
    assert ok.returncode == 0, ok.stderr
    assert len(os.listdir(out / 'images/train')) == 3 and len(os.listdir(out / 'semantic/val')) == 2
    again = run(['python', 'tools/make_shapes.py', '--out', str(out), '--num-train', '3', '--num-val', '2'])
    assert again.returncode != 0 and '--overwrite' in again.stderr
    bad = run(['python', 'tools/make_shapes.py', '--out', str(tmp_path / 'x'), '--num-train', '0'])
    assert bad.returncode != 0 and 'at least one' in bad.stderr
    bad = run(['python', 'tools/make_shapes.py', '--out', str(tmp_path / 'y'), '--min-size', '300',
               '--max-size', '200'])
    assert bad.returncode != 0 and 'min_size <= max_size' in bad.stderr


def test_get_flops_counts_linear_attention():
    """A nano detector on a small input: the count includes the attention matmuls (more than without)."""
    result = run(['python', 'tools/get_flops.py', DET_DEMO, '--shape', '128', '160'])
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'params' in result.stdout and 'FLOPs' in result.stdout


def test_flop_count_of_linear_attention_matches_formula():
    """FlopAnalyzer sees every matmul of the attention: qk projection, normalizer, kv, output, LePE."""
    import torch
    from mmengine.analysis import FlopAnalyzer

    from mlla_dense.models.layers.linear_attention import LinearAttention

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = LinearAttention(64, 2)

        def forward(self, x):
            return self.attn(x, (6, 10))

    b, n, c, heads = 2, 60, 64, 2
    d = c // heads
    flops = FlopAnalyzer(Wrapped(), (torch.randn(b, n, c),)).total()
    expected = b * (n * c * 2 * c + heads * (n * d + 2 * n * d * d) + n * c * 9)
    assert flops == expected
