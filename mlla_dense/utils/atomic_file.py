"""Writing a file so that a kill at any moment leaves either the old file or the complete new one.

mmengine writes checkpoints straight to their final name, so a process killed while saving leaves a truncated
``iter_N.pth`` that ``--resume`` then fails on. Here the bytes go to a temporary file in the same directory,
are flushed and fsynced, and the temporary file is renamed over the final name (``os.replace`` is atomic
within a file system); the directory is fsynced too, so the rename survives a power loss. A kill leaves at
most a ``.NAME.*.partial`` file, which :func:`remove_partial_files` cleans up.

``AtomicLocalBackend`` is mmengine's local file backend with these writes, registered as
``backend_args=dict(backend='atomic_local')``: what :class:`~mlla_dense.utils.safe_checkpoint_hook.SafeCheckpointHook`
saves its checkpoints through.
"""
import glob
import os
import os.path as osp
import uuid
from pathlib import Path
from typing import List, Union

from mmengine.fileio.backends import LocalBackend, register_backend

PARTIAL_SUFFIX = '.partial'


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Union[str, Path], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename: never a partial ``path``."""
    path = osp.abspath(str(path))
    directory = osp.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = osp.join(directory, f'.{osp.basename(path)}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}')
    try:
        with open(tmp, 'xb') as f:  # a new file, with the permissions the umask gives
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_directory(directory)


def remove_partial_files(directory: str) -> List[str]:
    """Delete the temporary files that killed :func:`atomic_write` calls left in ``directory``; returns them."""
    partial = glob.glob(osp.join(glob.escape(directory), f'.*{PARTIAL_SUFFIX}'))
    for path in partial:
        os.remove(path)
    return partial


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """mmengine's LocalBackend whose ``put`` and ``put_text`` are :func:`atomic_write`."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write(filepath, obj)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        atomic_write(filepath, obj.encode(encoding))
