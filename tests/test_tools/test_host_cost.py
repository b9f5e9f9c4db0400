"""tools/host_cost.py runs end to end (--smoke: tiny shapes through the interpreter) and records a host time for
the forward and backward of every Triton op and for the PyTorch ops beside them; the numbers themselves come
from the GPU machine."""
import json

import pytest
import torch

from helpers import run


def test_smoke_run_records_every_op(tmp_path):
    result = run(['python', 'tools/host_cost.py', '--smoke', '--out', str(tmp_path)], env={'TRITON_INTERPRET': '1'})
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / 'host_cost.json') as f:
        records = {r['call']: r['us'] for r in json.load(f)['records']}
    for op in ('layer_norm', 'depthwise_conv', 'linear_attention', 'selective_scan'):
        assert records[f'{op} forward'] > 0 and records[f'{op} backward'] > 0
    assert {'PyTorch: F.layer_norm', 'PyTorch: torch.empty'} <= set(records)


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the refusal on a machine without CUDA')
def test_without_gpu_only_smoke_runs():
    result = run(['python', 'tools/host_cost.py'], env={'TRITON_INTERPRET': '1'})
    assert result.returncode != 0 and 'only --smoke runs' in result.stderr
