"""A LoggerHook whose test-metrics JSON is written by the main process only.

mmengine 0.10.7's ``LoggerHook.after_test_epoch`` dumps ``<timestamp>.json`` from every rank into the same
work dir (the ranks share the timestamp), so a multi-GPU test races on one file and can leave it corrupt: the
shorter write lands over the longer one and the file ends in the longer one's tail. Here the other ranks still
log the epoch summary but do not write the file. Our configs select this hook as ``default_hooks.logger``.
"""
from mmengine.dist import is_main_process
from mmengine.hooks import LoggerHook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class MainProcessLoggerHook(LoggerHook):
    """mmengine's LoggerHook, except that only the main process writes the test metrics file."""

    def after_test_epoch(self, runner, metrics=None):
        if is_main_process():
            super().after_test_epoch(runner, metrics)
            return
        _, log_str = runner.log_processor.get_log_after_epoch(
            runner, len(runner.test_dataloader), 'test', with_non_scalar=True)
        runner.logger.info(log_str)
