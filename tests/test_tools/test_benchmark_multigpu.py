"""tools/benchmark_multigpu.py on CPU processes: the runs it makes, what it records, and its refusals."""
import json
import os.path as osp

import pytest
import torch

from helpers import DET_DEMO, make_tiny_shapes, run

TOOL = 'tools/benchmark_multigpu.py'


def data_options(root):
    return [f'train_dataloader.dataset.data_root={root}/', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'train_dataloader.batch_size=2']


def test_one_and_two_processes(tmp_path):
    shapes = make_tiny_shapes(tmp_path / 'shapes', num_train=16, num_val=2)
    out = tmp_path / 'out'
    result = run(['python', TOOL, DET_DEMO, '--gpus', '1', '2', '--iters', '4', '--warmup', '1',
                  '--work-dir', str(tmp_path / 'work'), '--out', str(out), '--cfg-options', *data_options(shapes)],
                 env=dict(OMP_NUM_THREADS='1'))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    with open(out / 'multigpu.json') as f:
        report = json.load(f)
    runs = {r['run']: r for r in report['records']}
    assert list(runs) == ['train.py', 'dist_train.sh x1', 'dist_train.sh x2']
    for r in runs.values():
        assert r['iters'] == 4 and r['nonfinite_losses'] == 0 and r['s_per_iter'] > 0
        assert r['images_per_s'] == pytest.approx(2 * r['processes'] / r['s_per_iter'], rel=1e-2)
    assert runs['dist_train.sh x1']['scaling_efficiency'] == 1.0
    two = runs['dist_train.sh x2']
    assert two['scaling_efficiency'] == pytest.approx(
        two['images_per_s'] / (2 * runs['dist_train.sh x1']['images_per_s']), abs=2e-3)
    assert report['launcher_overhead_1gpu'] == pytest.approx(
        runs['dist_train.sh x1']['s_per_iter'] / runs['train.py']['s_per_iter'] - 1, abs=2e-3)
    assert osp.getsize(out / 'multigpu.png') > 0
    # each run trained for exactly the requested iterations, with one log line per iteration
    with open(tmp_path / 'work' / 'dist_train_sh_x2' / 'timing_config.py') as f:
        assert "max_iters=4" in f.read()


def test_failed_run_names_its_log(tmp_path):
    result = run(['python', TOOL, DET_DEMO, '--gpus', '1', '--iters', '2', '--warmup', '1', '--work-dir',
                  str(tmp_path), '--out', str(tmp_path), '--cfg-options',
                  f'train_dataloader.dataset.data_root={tmp_path}/missing/'])
    assert result.returncode == 1
    assert 'failed' in result.stderr and 'output.log' in result.stderr


@pytest.mark.parametrize('argv,message', [
    (['--iters', '5', '--warmup', '5'], 'must be below --iters'),
    (['--gpus', '2'], 'must include 1'),
    pytest.param(['--sync-bn'], 'needs GPUs', marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason='refused only where there is no GPU')),
])
def test_bad_arguments_are_refused(argv, message):
    result = run(['python', TOOL, DET_DEMO, *argv])
    assert result.returncode == 2 and message in result.stderr
