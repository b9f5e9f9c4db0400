"""tools/demo.py (`make demo`) end to end on a tiny dataset: every stage runs, the summary is written, PNGs are
drawn; a failing stage makes it exit non-zero after the summary."""
import glob
import json
import os
import os.path as osp

from helpers import run


def demo(tmp_path, data, *extra):
    return run(['python', 'tools/demo.py', '--data', str(data), '--work-dir', str(tmp_path / 'work'),
                '--num-train', '8', '--num-val', '2', '--num-vis', '2', '--det-epochs', '1', '--seg-iters', '2',
                *extra], env=dict(OMP_NUM_THREADS='2'))


def test_demo_runs_every_stage(tmp_path):
    result = demo(tmp_path, tmp_path / 'shapes', '--device', 'cpu')
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    with open(tmp_path / 'work' / 'summary.json') as f:
        summary = json.load(f)
    assert [r['stage'] for r in summary['stages']] == ['generate data', 'train detection', 'evaluate detection',
                                                      'train segmentation', 'evaluate segmentation', 'visualize']
    assert all(r['status'] == 'ok' for r in summary['stages'])
    assert set(summary['metrics']) == {'box mAP', 'mask mAP', 'mIoU'}
    assert all(isinstance(v, float) for v in summary['metrics'].values())
    assert len(glob.glob(str(tmp_path / 'shapes' / 'images' / 'train' / '*.jpg'))) == 8
    assert sorted(osp.basename(p) for p in glob.glob(str(tmp_path / 'work' / 'vis' / '*.png'))) == [
        'det_val_000000.png', 'det_val_000001.png', 'seg_val_000000.png', 'seg_val_000001.png']
    assert 'mlla_dense demo summary' in result.stdout


def test_failing_stage_exits_non_zero_after_summary(tmp_path):
    broken = tmp_path / 'broken'
    os.makedirs(broken / 'annotations')  # looks generated, but holds nothing
    result = demo(tmp_path, broken, '--device', 'cpu')
    assert result.returncode == 1
    assert 'dataset not found' in result.stdout + result.stderr
    assert 'FAILED' in result.stdout and 'mlla_dense demo summary' in result.stdout


def test_bad_lengths_are_refused(tmp_path):
    result = run(['python', 'tools/demo.py', '--data', str(tmp_path / 'shapes'), '--seg-iters', '1'])
    assert result.returncode == 2 and '--seg-iters must be at least 2' in result.stderr
    assert not (tmp_path / 'shapes').exists()
