"""MainProcessLoggerHook: only the main process writes the test metrics JSON (mmengine lets every rank write it)."""
import json
import logging
from types import SimpleNamespace

import pytest

import mlla_dense.utils.main_process_logger_hook as hook_module
from mlla_dense.utils.main_process_logger_hook import MainProcessLoggerHook


class FakeLogProcessor:
    def get_log_after_epoch(self, runner, n_batches, mode, with_non_scalar=False):
        return {'coco/bbox_mAP': 0.5, 'time': 0.25}, f'Epoch({mode}) [{n_batches}/{n_batches}] bbox_mAP: 0.5'


@pytest.fixture
def runner(tmp_path):
    hook = MainProcessLoggerHook()
    runner = SimpleNamespace(log_dir=str(tmp_path), timestamp='20261123_000000', work_dir=str(tmp_path),
                             log_processor=FakeLogProcessor(), test_dataloader=[0, 1, 2],
                             logger=logging.getLogger('test_main_process_logger_hook'))
    hook.before_run(runner)
    return hook, runner


@pytest.mark.parametrize('main', [True, False])
def test_only_main_process_writes_metrics(runner, main, monkeypatch, caplog):
    hook, runner = runner
    monkeypatch.setattr(hook_module, 'is_main_process', lambda: main)
    with caplog.at_level(logging.INFO, logger='test_main_process_logger_hook'):
        hook.after_test_epoch(runner, metrics={'coco/bbox_mAP': 0.5})
    assert 'Epoch(test) [3/3] bbox_mAP: 0.5' in caplog.text
    path = f'{runner.log_dir}/{runner.timestamp}.json'
    if main:
        with open(path) as f:
            assert json.load(f) == {'coco/bbox_mAP': 0.5, 'time': 0.25}
    else:
        with pytest.raises(FileNotFoundError):
            open(path)
