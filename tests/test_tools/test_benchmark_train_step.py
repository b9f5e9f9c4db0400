"""tools/benchmark_train_step.py: a few fp32 training steps of the nano configs on CPU (the GPU runs give the
numbers), its records and plot, and clear refusals."""
import json
import math

import pytest
import torch

from helpers import DET_DEMO, SEG_DEMO, run


@pytest.mark.parametrize('config,size', [(DET_DEMO, '64x96'), (SEG_DEMO, '96x96')])
def test_runs_both_impls_and_writes_records(config, size, tmp_path):
    result = run(['python', 'tools/benchmark_train_step.py', config, '--dtypes', 'fp32', '--size', size,
                  '--batch', '2', '--iters', '3', '--warmup', '1', '--out', str(tmp_path),
                  '--impls', 'mlla_dense', 'mlla_dense-eager', 'eager-reference'])
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'step 3/3' in result.stdout
    with open(tmp_path / 'train_step.json') as f:
        records = json.load(f)
    assert [r['impl'] for r in records] == ['mlla_dense', 'mlla_dense-eager', 'eager-reference']
    assert records[0]['losses'] == records[1]['losses']  # same batches, same seeds, no graphs on CPU
    for r in records:
        assert (r['height'], r['width'], r['batch']) == (*map(int, size.split('x')), 2)
        assert r['input_shapes'] == 1 and r['capture_mb'] is None and r['size_stream'] is None
        assert len(r['losses']) == 3 and all(math.isfinite(v) for v in r['losses']) and r['nonfinite_losses'] == 0
        assert r['step_ms'] > 0 and r['command'].startswith('tools/benchmark_train_step.py')
    assert records[0]['step_ratio_vs_eager_reference'] > 0
    assert (tmp_path / 'train_step.png').stat().st_size > 10_000


def test_bad_arguments_are_refused(tmp_path):
    result = run(['python', 'tools/benchmark_train_step.py', DET_DEMO, '--iters', '2', '--warmup', '2'])
    assert result.returncode == 2 and 'must exceed --warmup' in result.stderr
    result = run(['python', 'tools/benchmark_train_step.py', DET_DEMO, '--size', '800'])
    assert result.returncode == 2 and 'HxW' in result.stderr
    result = run(['python', 'tools/benchmark_train_step.py', DET_DEMO, '--size', '64x96', '--size-stream', 'ms-crop'])
    assert result.returncode == 2 and 'not both' in result.stderr
    result = run(['python', 'tools/benchmark_train_step.py', SEG_DEMO, '--size-stream', 'ms-crop', '--dtypes', 'fp32',
                  '--out', str(tmp_path)])
    assert result.returncode != 0 and 'fixed crops' in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the refusal on a machine without CUDA')
def test_amp_without_gpu_is_refused(tmp_path):
    result = run(['python', 'tools/benchmark_train_step.py', DET_DEMO, '--dtypes', 'bf16', '--size', '64x96',
                  '--out', str(tmp_path)])
    assert result.returncode != 0 and 'needs a GPU' in result.stderr


def test_official_impl_needs_a_checkout_and_a_released_arch(tmp_path):
    result = run(['python', 'tools/benchmark_train_step.py', DET_DEMO, '--impls', 'official', 'mlla_dense'])
    assert result.returncode == 2 and '--official-mlla DIR or --official-vmamba DIR' in result.stderr
    result = run(['python', 'tools/benchmark_train_step.py', DET_DEMO, '--impls', 'official', '--official-mlla',
                  str(tmp_path), '--dtypes', 'fp32', '--size', '64x96', '--iters', '2', '--warmup', '1',
                  '--out', str(tmp_path)])
    assert result.returncode != 0 and "arch tiny/small/base, got type='MLLA' arch='nano'" in result.stderr


MASK_RCNN_T = 'configs/mlla/mask-rcnn_mlla-t_fpn_1x_coco.py'


def stream_run(tmp_path, *options):
    """bf16 steps of the COCO Mask R-CNN MLLA-T on the COCO-like multi-scale stream (drop path off: the two
    impls then draw the same random numbers), the config's graphed backbone against the eager one."""
    result = run(['python', 'tools/benchmark_train_step.py', MASK_RCNN_T, '--size-stream', 'ms-crop', '--dtypes',
                  'bf16', '--iters', '6', '--warmup', '1', '--impls', 'mlla_dense', 'mlla_dense-eager', '--out',
                  str(tmp_path), '--cfg-options', 'model.backbone.drop_path_rate=0', *options])
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / 'train_step.json') as f:
        return result, {r['impl']: r for r in json.load(f)}


@pytest.mark.gpu
def test_graphed_default_config_matches_eager_losses_over_bucket_shapes(tmp_path):
    result, records = stream_run(tmp_path)
    graphed, eager = records['mlla_dense'], records['mlla_dense-eager']
    assert graphed['input_shapes'] >= 2 and graphed['input_shapes'] == eager['input_shapes']
    assert graphed['capture_mb'] > 0 and eager['capture_mb'] is None
    assert 'run eagerly' not in result.stderr
    for step, (a, b) in enumerate(zip(graphed['losses'], eager['losses'])):
        assert abs(a - b) <= 1e-2 * abs(b), f'step {step}: graphed loss {a}, eager {b}'


@pytest.mark.gpu
def test_new_shape_past_the_cap_runs_eagerly_with_one_warning(tmp_path):
    result, records = stream_run(tmp_path, 'model.backbone.cuda_graphs=1')
    assert result.stderr.count('CUDA graphs are kept for 1 input signature(s)') == 1
    graphed, eager = records['mlla_dense'], records['mlla_dense-eager']
    assert graphed['input_shapes'] >= 2 and graphed['capture_mb'] > 0
    for a, b in zip(graphed['losses'], eager['losses']):
        assert abs(a - b) <= 1e-2 * abs(b)
