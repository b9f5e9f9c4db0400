"""mmengine saves and resumes its checkpoints under torch >= 2.6 once mlla_dense is imported."""
import subprocess
import sys

import torch

import mlla_dense  # noqa: F401  (allow-lists mmengine's checkpoint types)
from toy_runner import make_runner


def test_resume_continues_training(tmp_path):
    first = make_runner(tmp_path, max_iters=2)
    first.train()
    trained = first.model.linear.weight.detach().clone()
    checkpoint = tmp_path / 'iter_2.pth'
    assert checkpoint.exists()

    second = make_runner(tmp_path, max_iters=3, resume=True)
    second.train()
    assert second.iter == 3
    assert (tmp_path / 'iter_3.pth').exists()
    assert not torch.equal(second.model.linear.weight, trained)
    resumed = torch.load(checkpoint)  # weights_only=True by default on torch >= 2.6
    assert resumed['meta']['iter'] == 2 and 'message_hub' in resumed


def test_without_the_allow_list_resume_fails(tmp_path):
    """Control: in a fresh interpreter without mlla_dense, plain torch.load refuses the same checkpoint."""
    make_runner(tmp_path, max_iters=1).train()
    code = f"import torch; torch.load({str(tmp_path / 'iter_1.pth')!r})"
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode != 0 and 'Weights only load failed' in result.stderr


def test_fresh_process_with_mlla_dense_loads_checkpoint(tmp_path):
    """A fresh interpreter (no HistoryBuffer built yet, as in tools/test.py) loads the checkpoint."""
    make_runner(tmp_path, max_iters=1).train()
    code = (f"import mlla_dense, torch; c = torch.load({str(tmp_path / 'iter_1.pth')!r}); "
            "print(c['meta']['iter'])")
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith('1')


class _GetattrPayload:
    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer
        return (getattr, (HistoryBuffer, 'update'))


def test_getattr_is_limited_to_statistics_methods(tmp_path):
    path = tmp_path / 'payload.pth'
    torch.save({'payload': _GetattrPayload()}, path)
    try:
        torch.load(path)
    except Exception as error:  # noqa: BLE001 - torch wraps the refusal in UnpicklingError
        assert "getattr(<class 'mmengine.logging.history_buffer.HistoryBuffer'>, 'update')" in str(error)
    else:
        raise AssertionError('getattr(HistoryBuffer, "update") was allowed')
