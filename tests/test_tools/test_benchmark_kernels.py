"""tools/benchmark_kernels.py runs end to end (--smoke: tiny shapes through the interpreter) and writes its
JSON records and plot; the numbers themselves come from the GPU machine."""
import json

import pytest
import torch

from helpers import run


@pytest.mark.parametrize('op', ['linear_attention', 'selective_scan', 'depthwise_conv', 'layer_norm'])
def test_smoke_run_writes_records_and_plot(op, tmp_path):
    result = run(['python', 'tools/benchmark_kernels.py', '--op', op, '--smoke', '--no-compile',
                  '--out', str(tmp_path)], env={'TRITON_INTERPRET': '1'})
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / f'{op}.json') as f:
        payload = json.load(f)
    assert payload['command'].startswith('tools/benchmark_kernels.py')
    cases = {(r['impl'], r['pass_']) for r in payload['records']}
    assert cases == {(i, p) for i in ('triton', 'eager') for p in ('forward', 'forward+backward')}
    assert all(r['ms'] > 0 for r in payload['records'])
    assert (tmp_path / f'{op}.png').stat().st_size > 10_000


def test_gated_linear_attention_smoke_times_the_selective_scan_too(tmp_path):
    """--op gated_linear_attention times the selective-scan kernel on the same shape beside the gated kernels."""
    result = run(['python', 'tools/benchmark_kernels.py', '--op', 'gated_linear_attention', '--smoke', '--no-compile',
                  '--out', str(tmp_path)], env={'TRITON_INTERPRET': '1'})
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / 'gated_linear_attention.json') as f:
        records = json.load(f)['records']
    assert {(r['impl'], r['pass_']) for r in records} == {
        (i, p) for i in ('triton', 'eager', 'selective_scan') for p in ('forward', 'forward+backward')}
    assert (tmp_path / 'gated_linear_attention.png').stat().st_size > 10_000


def test_tuning_replaces_entries_of_the_table_and_is_recorded(tmp_path):
    tiles = {'block_n': 16, 'tile_w': 4}
    result = run(['python', 'tools/benchmark_kernels.py', '--op', 'depthwise_conv', '--smoke', '--no-compile',
                  '--tuning', json.dumps(tiles), '--out', str(tmp_path)], env={'TRITON_INTERPRET': '1'})
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / 'depthwise_conv.json') as f:
        payload = json.load(f)
    assert payload['tuning']['block_n'] == 16 and payload['tuning']['tile_w'] == 4
    assert payload['tuning']['grad_block_n'] == 32  # the entries not given keep their values
    assert len(payload['records']) == 4


@pytest.mark.parametrize('op,tuning,message', [
    ('depthwise_conv', '{"tile": 8}', "['tile'] are not in the TUNING table of depthwise_conv"),
    ('selective_scan', '{"BLOCK_L": 64}', 'selective_scan has no TUNING table'),
    ('layer_norm', '[1, 2]', '--tuning takes a JSON object')])
def test_tuning_refuses_what_the_op_does_not_have(op, tuning, message, tmp_path):
    result = run(['python', 'tools/benchmark_kernels.py', '--op', op, '--smoke', '--tuning', tuning,
                  '--out', str(tmp_path)], env={'TRITON_INTERPRET': '1'})
    assert result.returncode == 1 and message in result.stderr, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the refusal on a machine without CUDA')
def test_without_gpu_only_smoke_runs(tmp_path):
    result = run(['python', 'tools/benchmark_kernels.py', '--out', str(tmp_path)], env={'TRITON_INTERPRET': '1'})
    assert result.returncode != 0 and 'only --smoke runs' in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason='the refusal is for machines without a GPU')
def test_smoke_on_cpu_without_the_interpreter_says_how_to_run_it(tmp_path):
    result = run(['python', 'tools/benchmark_kernels.py', '--op', 'layer_norm', '--smoke', '--out', str(tmp_path)],
                 env={'TRITON_INTERPRET': '0'})
    assert result.returncode == 1 and 'TRITON_INTERPRET=1 python tools/benchmark_kernels.py --smoke' in result.stderr
    assert 'Traceback' not in result.stderr
