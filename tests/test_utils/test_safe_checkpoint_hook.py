"""SafeCheckpointHook: a failed save leaves the previous checkpoint, also the previous best one (mmengine's hook
deletes them first), and the temporary files of killed saves are removed when training starts."""
import pytest
from mmengine.hooks import Hook

import mlla_dense  # noqa: F401  (registers the hook)
from toy_runner import make_runner


class FailingSave(Hook):
    """Stands for a save that dies midway (disk full, kill): raises while checkpoint ``step`` is saved."""

    def __init__(self, step):
        self.step = step

    def before_save_checkpoint(self, runner, checkpoint):
        if checkpoint['meta']['iter'] == self.step:
            raise OSError('No space left on device')


def files(path):
    """The files of a work dir but the config the runner dumps there."""
    return sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix != '.py')


def test_keeps_the_newest_checkpoints(tmp_path):
    hook = dict(type='SafeCheckpointHook', interval=1, by_epoch=False, max_keep_ckpts=2)
    make_runner(tmp_path, max_iters=4, checkpoint=hook).train()
    assert files(tmp_path) == ['iter_3.pth', 'iter_4.pth', 'last_checkpoint']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_4.pth')


@pytest.mark.parametrize('hook_type,left', [('CheckpointHook', []), ('SafeCheckpointHook', ['iter_2.pth'])])
def test_failed_save_keeps_previous_checkpoint(tmp_path, hook_type, left):
    hook = dict(type=hook_type, interval=1, by_epoch=False, max_keep_ckpts=1)
    runner = make_runner(tmp_path, max_iters=3, checkpoint=hook, custom_hooks=[FailingSave(step=3)])
    with pytest.raises(OSError, match='No space left'):
        runner.train()
    assert [name for name in files(tmp_path) if name.endswith('.pth')] == left


def test_removes_partial_files_of_killed_saves(tmp_path):
    (tmp_path / '.iter_2.pth.abc_12.partial').write_bytes(b'half a checkpoint')
    (tmp_path / '.last_checkpoint.xyz.partial').write_bytes(b'')
    (tmp_path / 'notes.partial').write_bytes(b'not ours')
    hook = dict(type='SafeCheckpointHook', interval=1, by_epoch=False)
    make_runner(tmp_path, max_iters=1, checkpoint=hook).train()
    assert files(tmp_path) == ['iter_1.pth', 'last_checkpoint', 'notes.partial']


def test_resumed_run_removes_the_checkpoint_a_kill_left(tmp_path):
    hook = dict(type='SafeCheckpointHook', interval=1, by_epoch=False, max_keep_ckpts=1)
    make_runner(tmp_path, max_iters=2, checkpoint=hook).train()
    (tmp_path / 'iter_1.pth').write_bytes((tmp_path / 'iter_2.pth').read_bytes())  # killed before its removal
    make_runner(tmp_path, max_iters=2, checkpoint=hook, resume=True).train()
    assert [name for name in files(tmp_path) if name.endswith('.pth')] == ['iter_2.pth']


def best_checkpoints(path):
    return [name for name in files(path) if name.startswith('best_')]


@pytest.mark.parametrize('hook_type,left', [('CheckpointHook', []), ('SafeCheckpointHook', ['best_acc_iter_2.pth'])])
def test_failed_best_save_keeps_previous_best(tmp_path, hook_type, left):
    hook = dict(type=hook_type, interval=1, by_epoch=False, save_best='acc', rule='greater')
    runner = make_runner(tmp_path, max_iters=2, checkpoint=hook, custom_hooks=[FailingSave(step=3)])
    runner.train()
    checkpoint_hook = next(h for h in runner.hooks if type(h).__name__ == hook_type)
    checkpoint_hook.after_val_epoch(runner, {'acc': 0.5})
    assert best_checkpoints(tmp_path) == ['best_acc_iter_2.pth']
    runner.train_loop._iter = 3  # a later validation, whose best save dies
    with pytest.raises(OSError, match='No space left'):
        checkpoint_hook.after_val_epoch(runner, {'acc': 0.7})
    assert best_checkpoints(tmp_path) == left


def test_new_best_replaces_previous_best(tmp_path):
    hook = dict(type='SafeCheckpointHook', interval=1, by_epoch=False, save_best='acc', rule='greater')
    runner = make_runner(tmp_path, max_iters=2, checkpoint=hook)
    runner.train()
    checkpoint_hook = next(h for h in runner.hooks if type(h).__name__ == 'SafeCheckpointHook')
    checkpoint_hook.after_val_epoch(runner, {'acc': 0.5})
    runner.train_loop._iter = 3
    checkpoint_hook.after_val_epoch(runner, {'acc': 0.4})  # not better: the best stays
    assert best_checkpoints(tmp_path) == ['best_acc_iter_2.pth']
    runner.train_loop._iter = 4
    checkpoint_hook.after_val_epoch(runner, {'acc': 0.7})
    assert best_checkpoints(tmp_path) == ['best_acc_iter_4.pth']
    assert runner.message_hub.get_info('best_ckpt') == str(tmp_path / 'best_acc_iter_4.pth')


def test_best_of_several_indicators_replaced_one_by_one(tmp_path):
    hook = dict(type='SafeCheckpointHook', interval=1, by_epoch=False, save_best=['acc', 'mIoU'],
                rule=['greater', 'greater'])
    runner = make_runner(tmp_path, max_iters=2, checkpoint=hook)
    runner.train()
    checkpoint_hook = next(h for h in runner.hooks if type(h).__name__ == 'SafeCheckpointHook')
    checkpoint_hook.after_val_epoch(runner, {'acc': 0.5, 'mIoU': 0.3})
    runner.train_loop._iter = 3
    checkpoint_hook.after_val_epoch(runner, {'acc': 0.6, 'mIoU': 0.2})
    assert best_checkpoints(tmp_path) == ['best_acc_iter_3.pth', 'best_mIoU_iter_2.pth']
