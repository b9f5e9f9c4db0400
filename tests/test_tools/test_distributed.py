"""tools/dist_train.sh and dist_test.sh with 2 CPU processes (gloo): train, resume, test, launcher errors."""
import glob
import json
import os
import os.path as osp
import pickle
import socket
import sys

import pytest
import torch

from helpers import DET_DEMO, data_options, make_tiny_shapes, run


def free_port():
    with socket.socket() as sock:
        sock.bind(('', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_tiny_shapes(tmp_path_factory.mktemp('ddp') / 'shapes', num_train=16, num_val=4)


def dist_env():
    return dict(PYTHON=sys.executable, PORT=str(free_port()), OMP_NUM_THREADS='1')


def ends_of(result):
    """The ends of a launch's stdout and stderr: how far the run got (the log) and how it stopped."""
    return f'stdout:\n{result.stdout[-2500:]}\nstderr:\n{result.stderr[-2500:]}'


def newest_run(work_dir):
    return sorted(d for d in glob.glob(osp.join(work_dir, '2*')) if osp.isdir(d))[-1]


def scalars(work_dir):
    """Losses logged by the newest training run in ``work_dir``."""
    with open(osp.join(newest_run(work_dir), 'vis_data', 'scalars.json')) as f:
        return [json.loads(line) for line in f]


def logged_test_metrics(work_dir):
    """The metrics that tools/test.py wrote for the newest run in ``work_dir`` (<run>/<run>.json)."""
    run_dir = newest_run(work_dir)
    with open(osp.join(run_dir, osp.basename(run_dir) + '.json')) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def trained(shapes, tmp_path_factory):
    work = str(tmp_path_factory.mktemp('ddp_work'))
    opts = data_options(shapes, 'mmdet') + ['train_cfg.max_epochs=2', 'train_cfg.val_interval=10',
                                            'default_hooks.checkpoint.interval=1',
                                            'default_hooks.checkpoint.max_keep_ckpts=-1',
                                            'default_hooks.logger.interval=1']
    result = run(['bash', 'tools/dist_train.sh', DET_DEMO, '2', '--work-dir', work, '--cfg-options', *opts],
                 env=dist_env())
    assert result.returncode == 0, ends_of(result)
    return work, opts, result


def test_both_ranks_train_with_finite_losses(trained):
    work, _, result = trained
    log = result.stdout + result.stderr
    assert 'Distributed launcher: pytorch' in log and 'Distributed training: True' in log
    # 16 images, batch 8: one iteration per epoch on each of 2 ranks (a single process would run two)
    assert 'Epoch(train) [1][1/1]' in log and 'Epoch(train) [2][1/1]' in log
    losses = [r['loss'] for r in scalars(work) if 'loss' in r]
    assert len(losses) == 2 and all(l == l and abs(l) < 1e6 for l in losses)


def test_only_rank0_writes(trained):
    work, _, _ = trained
    assert sorted(osp.basename(p) for p in glob.glob(osp.join(work, '*.pth'))) == ['epoch_1.pth', 'epoch_2.pth']
    runs = [d for d in glob.glob(osp.join(work, '2*')) if osp.isdir(d)]
    assert len(runs) == 1
    logs = glob.glob(osp.join(runs[0], '*.log'))
    assert len(logs) == 1, logs


def test_resume_in_distributed_mode(trained):
    work, opts, _ = trained
    opts = [o for o in opts if not o.startswith('train_cfg.max_epochs')] + ['train_cfg.max_epochs=3']
    result = run(['bash', 'tools/dist_train.sh', DET_DEMO, '2', '--work-dir', work, '--resume',
                  '--cfg-options', *opts], env=dist_env())
    assert result.returncode == 0, ends_of(result)
    assert 'resumed epoch: 2' in (result.stdout + result.stderr)
    assert osp.exists(osp.join(work, 'epoch_3.pth'))


def test_dist_test_matches_single_process(trained, shapes, tmp_path):
    work, _, _ = trained
    checkpoint = osp.join(work, 'epoch_2.pth')
    # One image per batch: a batch pads its images to the largest, and the global attention sees the padding,
    # so predictions would depend on which images two ranks group together (the demo config pads to 8).
    opts = data_options(shapes, 'mmdet') + ['test_dataloader.batch_size=1']
    # One thread, as each rank has: CPU kernels sum in an order that depends on the thread count, and the
    # near-tied scores of this 2-epoch model can then keep different boxes (seen once: 8 of 80 coordinates).
    single = run(['python', 'tools/test.py', DET_DEMO, checkpoint, '--work-dir', str(tmp_path / 'single'),
                  '--out', str(tmp_path / 'single.pkl'), '--cfg-options', *opts], env=dict(OMP_NUM_THREADS='1'))
    assert single.returncode == 0, single.stderr[-3000:]
    dist = run(['bash', 'tools/dist_test.sh', DET_DEMO, checkpoint, '2', '--work-dir', str(tmp_path / 'dist'),
                '--out', str(tmp_path / 'dist.pkl'), '--cfg-options', *opts], env=dist_env())
    assert dist.returncode == 0, (dist.stdout + dist.stderr)[-3000:]
    metrics = [logged_test_metrics(str(tmp_path / d)) for d in ('single', 'dist')]
    keys = [k for k in metrics[0] if k.startswith('coco/')]
    assert keys and all(metrics[0][k] == metrics[1][k] for k in keys), metrics
    predictions = []
    for name in ('single', 'dist'):
        with open(tmp_path / f'{name}.pkl', 'rb') as f:
            predictions.append(sorted(pickle.load(f), key=lambda p: p['img_id']))
    assert [p['img_id'] for p in predictions[0]] == [p['img_id'] for p in predictions[1]] and predictions[0]
    assert sum(len(p['pred_instances']['scores']) for p in predictions[0]) > 0
    for one, two in zip(*predictions):
        for key in ('bboxes', 'scores', 'labels'):
            torch.testing.assert_close(two['pred_instances'][key], one['pred_instances'][key])


def test_too_many_processes_is_a_clear_error(tmp_path):
    result = run(['bash', 'tools/dist_train.sh', DET_DEMO, str((os.cpu_count() or 1) + 1), '--work-dir',
                  str(tmp_path)], env=dist_env())
    assert result.returncode != 0 and 'processes but only' in result.stderr


def test_busy_port_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(('', 0))
        busy.listen()
        env = dict(dist_env(), PORT=str(busy.getsockname()[1]))
        result = run(['bash', 'tools/dist_train.sh', DET_DEMO, '1', '--work-dir', str(tmp_path)], env=env)
    assert result.returncode != 0 and 'is in use' in result.stderr
