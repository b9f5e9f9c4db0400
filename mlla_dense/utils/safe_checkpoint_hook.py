"""A CheckpointHook whose checkpoints survive a kill at any moment.

mmengine 0.10.7's ``CheckpointHook`` writes a checkpoint straight to its final name, rewrites ``last_checkpoint``
in place, and with ``max_keep_ckpts`` deletes the oldest checkpoint *before* writing the new one: a kill during
the save leaves a truncated newest checkpoint (``--resume`` fails on it) and, with ``max_keep_ckpts=1``, no
intact one at all. Here checkpoints and ``last_checkpoint`` are written atomically (:mod:`.atomic_file`), an
outdated checkpoint is deleted only once its successor and ``last_checkpoint`` are on disk (a checkpoint names
the one it displaces, so a resumed run deletes it if a kill came first), the previous best checkpoint
(``save_best``) likewise only once the new best is on disk (mmengine deletes it first), and the temporary files
of killed saves are removed when training starts. Our configs select this hook as
``default_hooks.checkpoint`` and tools/train.py uses it in place of mmengine's.
"""
import os.path as osp
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from .atomic_file import atomic_write, remove_partial_files


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook (same keyword arguments) with atomic writes and deletion after the save.

    Checkpoints go through the ``atomic_local`` file backend unless ``backend_args``, ``file_client_args``
    or a remote ``out_dir`` (``s3://...``) choose another storage, which is then used as it is.
    """

    def __init__(self, interval: int = -1, *, backend_args: Optional[dict] = None,
                 file_client_args: Optional[dict] = None, out_dir: Optional[str] = None, **kwargs):
        if backend_args is None and file_client_args is None and '://' not in str(out_dir or ''):
            backend_args = dict(backend='atomic_local')
        super().__init__(interval, backend_args=backend_args, file_client_args=file_client_args, out_dir=out_dir,
                         **kwargs)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not is_main_process():
            return
        outdated = runner.message_hub.get_info('outdated_ckpt_id')
        if self.max_keep_ckpts > 0 and outdated is not None:
            self._remove(self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(outdated)))
        directories = {runner.work_dir}
        if self.backend_args == dict(backend='atomic_local'):
            directories.add(self.out_dir)
        for directory in sorted(directories):
            for path in remove_partial_files(directory) if osp.isdir(directory) else []:
                runner.logger.info(f'Removed {path}, left by a checkpoint save that was interrupted')

    def _save_checkpoint_with_step(self, runner, step, meta):
        outdated = self._keep(runner, step)
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(self.out_dir, filename, self.file_client_args, save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                               backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt.encode())
        if outdated is not None:
            self._remove(self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(outdated)))

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """mmengine's, but a replaced best checkpoint is removed after its successor is saved, not before."""
        if not self.save_best:
            return
        previous = self._best_paths()
        for key in previous:  # with no previous path, mmengine's method has nothing to remove first
            self._set_best_path(key, None)
        try:
            super()._save_best_checkpoint(runner, metrics)
        except BaseException:  # the save failed: the previous best checkpoints stay the best
            for key, old in previous.items():
                self._set_best_path(key, old)
            raise
        for key, new in self._best_paths().items():
            old = previous[key]
            if new is None:  # not improved: the previous best stays the best
                self._set_best_path(key, old)
            elif old is not None and old != new and is_main_process():
                self._remove(old)
                runner.logger.info(f'The previous best checkpoint {old} is removed')

    def _best_paths(self) -> dict:
        """Best checkpoint path by key indicator (the key None where there is one indicator)."""
        return {None: self.best_ckpt_path} if len(self.key_indicators) == 1 else dict(self.best_ckpt_path_dict)

    def _set_best_path(self, key, path) -> None:
        if key is None:
            self.best_ckpt_path = path
        else:
            self.best_ckpt_path_dict[key] = path

    def _keep(self, runner, step) -> Optional[int]:
        """Record ``step`` among the kept checkpoints (saved with the checkpoint); the step it displaces."""
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            return None
        outdated = self.keep_ckpt_ids.popleft() if len(self.keep_ckpt_ids) == self.max_keep_ckpts else None
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        runner.message_hub.update_info('outdated_ckpt_id', outdated)
        return outdated

    def _remove(self, path: str) -> None:
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are directories
            self.file_backend.rmtree(path)
