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
                  '--batch', '2', '--iters', '3', '--warmup', '1', '--out', str(tmp_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'step 3/3' in result.stdout
    with open(tmp_path / 'train_step.json') as f:
        records = json.load(f)
    assert [r['impl'] for r in records] == ['mlla_dense', 'eager-reference']
    for r in records:
        assert (r['height'], r['width'], r['batch']) == (*map(int, size.split('x')), 2)
        assert len(r['losses']) == 3 and all(math.isfinite(v) for v in r['losses']) and r['nonfinite_losses'] == 0
        assert r['step_ms'] > 0 and r['command'].startswith('tools/benchmark_train_step.py')
    assert records[0]['step_ratio_vs_eager_reference'] > 0
    assert (tmp_path / 'train_step.png').stat().st_size > 10_000


def test_bad_arguments_are_refused(tmp_path):
    result = run(['python', 'tools/benchmark_train_step.py', DET_DEMO, '--iters', '2', '--warmup', '2'])
    assert result.returncode == 2 and 'must exceed --warmup' in result.stderr
    result = run(['python', 'tools/benchmark_train_step.py', DET_DEMO, '--size', '800'])
    assert result.returncode == 2 and 'HxW' in result.stderr


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
