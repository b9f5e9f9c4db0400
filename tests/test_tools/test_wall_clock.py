"""tools/wall_clock.py: argument checks and its refusal without a GPU (its numbers come from the GPU machine)."""
import pytest
import torch

from helpers import run


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the refusal on a machine without CUDA')
def test_without_gpu_refuses(tmp_path):
    result = run(['python', 'tools/wall_clock.py', '--out', str(tmp_path)])
    assert result.returncode != 0 and 'needs a GPU' in result.stderr
    assert not list(tmp_path.iterdir())


def test_unknown_model_is_an_argument_error(tmp_path):
    result = run(['python', 'tools/wall_clock.py', '--model', 'resnet50', '--out', str(tmp_path)])
    assert result.returncode == 2 and 'invalid choice' in result.stderr
