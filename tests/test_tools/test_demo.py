"""tools/demo.py (`make demo`) end to end on a tiny dataset with a few iterations per training (a smoke run of
the demo's path, not its results): every stage runs, the summary is written and printed, readable pictures
are drawn, with the trainings side by side (two worker processes, the CPU default) or one after the other, and
with config variants given on the command line; a failing stage makes it exit non-zero after the summary."""
import glob
import importlib.util
import json
import os
import os.path as osp
from types import SimpleNamespace

import cv2
import torch
from mmengine.config import Config

from helpers import DET_DEMO, SEG_DEMO, run


def demo(tmp_path, data, *extra):
    return run(['python', 'tools/demo.py', '--data', str(data), '--work-dir', str(tmp_path / 'work'),
                '--num-train', '8', '--num-val', '2', '--num-vis', '2', '--pretrain-iters', '2', '--det-epochs', '1',
                '--seg-iters', '2', *extra], env=dict(OMP_NUM_THREADS='2'))


def variant(tmp_path, name, shipped):
    """A config of another name that inherits the shipped demo config ``shipped`` and marks itself."""
    path = tmp_path / f'{name}.py'
    path.write_text(f"_base_ = ['{shipped}']\nvariant = '{name}'\n")
    return str(path)


def test_demo_runs_every_stage(tmp_path):
    # --det-config and --seg-config: variants, whose names do not say which task they are
    det = variant(tmp_path, 'det_variant', DET_DEMO)
    seg = variant(tmp_path, 'seg_variant', SEG_DEMO)
    result = demo(tmp_path, tmp_path / 'shapes', '--device', 'cpu', '--det-config', det, '--seg-config', seg)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    with open(tmp_path / 'work' / 'summary.json') as f:
        summary = json.load(f)
    assert [r['stage'] for r in summary['stages']] == [
        'generate data', 'pretrain backbone', 'train detection', 'evaluate detection', 'train segmentation',
        'evaluate segmentation', 'draw pictures']
    assert all(r['status'] == 'ok' for r in summary['stages'])
    # the two trainings ran side by side, in worker processes whose output is relayed with a prefix
    assert [r['stage'] for r in summary['stages'] if r.get('side_by_side')] == [
        'train detection', 'evaluate detection', 'train segmentation', 'evaluate segmentation']
    assert summary['side_by_side_seconds'] > 0
    assert '[det] ' in result.stdout and '[seg] ' in result.stdout
    assert all(osp.exists(tmp_path / 'work' / task / 'training_ended') for task in ('det', 'seg'))
    assert set(summary['metrics']) == {'val', 'val_restyled'}
    for values in summary['metrics'].values():  # UperNet's mIoU with its config's test-time flips, and without
        assert set(values) == {'box mAP', 'mask mAP', 'box AP50', 'mask AP50', 'mIoU', 'mIoU no TTA'}
        assert all(isinstance(v, float) and 0 <= v <= 1 for v in values.values())
    for split, count in (('train', 8), ('val', 2), ('val_restyled', 2)):
        assert len(glob.glob(str(tmp_path / 'shapes' / 'images' / split / '*.jpg'))) == count
    pictures = sorted(glob.glob(str(tmp_path / 'work' / 'vis' / '*.png')))
    assert [osp.basename(p) for p in pictures] == ['val_000000.png', 'val_000001.png', 'val_restyled_000000.png',
                                                   'val_restyled_000001.png']
    for picture in pictures:  # two rows (instances, semantic) of three panels, each at least 384 px
        height, width = cv2.imread(picture).shape[:2]
        assert height >= 2 * 384 and width >= 3 * 384
    out = result.stdout
    assert 'mlla_dense demo summary' in out and 'budget 600 s' in out
    assert summary['generalizes'] in ('yes', 'no', 'n/a')
    assert f'of each val metric with a target): {summary["generalizes"]}' in out
    for metric in ('box mAP', 'mask mAP', 'mIoU'):
        assert any(line.startswith(metric) and ('met' in line or 'missed' in line) for line in out.splitlines())
    assert any(line.startswith('mIoU no TTA') for line in out.splitlines())
    # the test-time runner worked apart (seg/tta): the config dumped beside the training stays the trained model's
    dumped = Config.fromfile(str(tmp_path / 'work' / 'seg' / 'seg_variant.py'))
    assert dumped.model.type == 'EncoderDecoder' and dumped.variant == 'seg_variant'
    assert Config.fromfile(str(tmp_path / 'work' / 'det' / 'det_variant.py')).variant == 'det_variant'
    assert Config.fromfile(glob.glob(str(tmp_path / 'work' / 'seg' / 'tta' / '*.py'))[0]).model.type == 'SegTTAModel'


def test_one_after_another(tmp_path):
    result = demo(tmp_path, tmp_path / 'shapes', '--device', 'cpu', '--pretrain-iters', '0', '--one-after-another')
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    with open(tmp_path / 'work' / 'summary.json') as f:
        summary = json.load(f)
    assert [r['stage'] for r in summary['stages']] == [
        'generate data', 'train detection', 'evaluate detection', 'train segmentation', 'evaluate segmentation',
        'draw pictures']
    assert all(r['status'] == 'ok' and not r.get('side_by_side') for r in summary['stages'])
    assert summary['side_by_side_seconds'] is None
    assert set(summary['metrics']) == {'val', 'val_restyled'}
    for values in summary['metrics'].values():
        assert set(values) == {'box mAP', 'mask mAP', 'box AP50', 'mask AP50', 'mIoU', 'mIoU no TTA'}
    assert len(glob.glob(str(tmp_path / 'work' / 'vis' / '*.png'))) == 4


def test_failing_stage_exits_non_zero_after_summary(tmp_path):
    broken = tmp_path / 'broken'
    os.makedirs(broken / 'annotations')  # looks generated, but holds nothing
    result = demo(tmp_path, broken, '--device', 'cpu')
    assert result.returncode == 1
    assert 'dataset not found' in result.stdout + result.stderr
    assert 'FAILED' in result.stdout and 'mlla_dense demo summary' in result.stdout


def test_bad_arguments_are_refused(tmp_path):
    for option, message in (('--seg-iters', '--seg-iters must be at least 2'),
                            ('--pretrain-iters', '--pretrain-iters must be 0')):
        result = run(['python', 'tools/demo.py', '--data', str(tmp_path / 'shapes'), option, '1'])
        assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / 'shapes').exists()
    result = run(['python', 'tools/demo.py', '--data', str(tmp_path / 'shapes'), '--seg-config', 'missing.py'])
    assert result.returncode == 2 and '--seg-config: no config file at missing.py' in result.stderr


def load_demo_tool():
    spec = importlib.util.spec_from_file_location('demo_tool', 'tools/demo.py')
    demo_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_tool)
    return demo_tool


def test_summary_keeps_verdicts_to_the_targets(tmp_path, capsys):
    """The summary judges the metrics with targets (and generalization by them alone); the others, AP at IoU 0.5
    among them, are shown with the share val_restyled keeps and no verdict."""
    demo_tool = load_demo_tool()
    stages = SimpleNamespace(start=0.0, rows=[], side_by_side=None)
    args = SimpleNamespace(work_dir=str(tmp_path), device='cpu')
    val = {'box mAP': 0.6, 'mask mAP': 0.5, 'mIoU': 0.7, 'box AP50': 0.8, 'mask AP50': 0.4}
    restyled = {'box mAP': 0.3, 'mask mAP': 0.45, 'mIoU': 0.63, 'box AP50': 0.78, 'mask AP50': 0.1}
    demo_tool.report(args, stages, {'val': val, 'val_restyled': restyled})
    lines = {line.split('  ')[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines['box mAP'].split()[-3:] == ['met', '0.300', '50%']
    assert lines['mask mAP'].split()[-3:] == ['met', '0.450', '90%']
    assert lines['box AP50'].split()[-3:] == ['0.800', '0.780', '98%']
    assert lines['mask AP50'].split()[-3:] == ['0.400', '0.100', '25%']
    with open(tmp_path / 'summary.json') as f:
        assert json.load(f)['generalizes'] == 'no'  # box mAP keeps 50%; mask AP50's 25% has no say
    restyled['box mAP'] = 0.5
    demo_tool.report(args, stages, {'val': val, 'val_restyled': restyled})
    with open(tmp_path / 'summary.json') as f:
        assert json.load(f)['generalizes'] == 'yes'


def test_threads_rise_when_the_other_training_ends(tmp_path):
    """Side by side, a worker whose partner has marked the end of its training takes the idle core: its hook
    raises the threads at the next check (every 10 iterations), once, and says so in the log."""
    demo_tool = load_demo_tool()
    marker = tmp_path / 'det' / 'training_ended'
    hook = demo_tool.ThreadsWhenPartnerDone(str(marker), threads=2)
    logged = []
    runner = SimpleNamespace(iter=40, logger=SimpleNamespace(info=logged.append))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        hook.before_train_iter(runner, 0)
        assert torch.get_num_threads() == 1 and not logged
        marker.parent.mkdir()
        marker.touch()
        hook.before_train_iter(runner, 5)
        assert torch.get_num_threads() == 1
        hook.before_train_iter(runner, 10)
        assert torch.get_num_threads() == 2 and logged == ['the other training has finished: 2 threads from '
                                                           'iteration 40']
        torch.set_num_threads(1)
        hook.before_train_iter(runner, 20)
        assert torch.get_num_threads() == 1 and len(logged) == 1
    finally:
        torch.set_num_threads(threads)
