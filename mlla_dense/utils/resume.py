"""Choosing the checkpoint ``--resume`` continues from: the newest one of the work dir that loads.

mmengine resumes from the file named in ``last_checkpoint`` and stops if it does not load, although an older,
intact checkpoint may sit beside it (a truncated file from a kill during a save by mmengine's own
CheckpointHook, a disk that filled up). Here the candidates are ``last_checkpoint``'s target, then
``iter_*.pth`` / ``epoch_*.pth`` by number, newest first; each is loaded on the CPU and checked for the
``state_dict`` and ``meta`` that resuming needs, the ones that fail are reported with the reason, and the
first good one is taken. A work dir without checkpoint files starts from scratch (mmengine's behaviour);
one whose checkpoints all fail to load is an error rather than a silent restart.
"""
import glob
import os.path as osp
import re
from typing import Callable, List, Optional

import torch

CHECKPOINT_NAME = re.compile(r'(?:iter|epoch)_(\d+)\.pth')
ZIP_MAGIC, PICKLE_MAGIC = b'PK\x03\x04', b'\x80'  # how torch.save's files start (zip; legacy pickle)


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be resumed from, or None if it loads and has ``state_dict`` and ``meta``."""
    if not osp.isfile(path):
        return 'no such file' if not osp.exists(path) else 'not a file'
    if osp.getsize(path) == 0:
        return 'empty file'
    try:
        checkpoint = torch.load(path, map_location='cpu')
    except Exception as error:  # noqa: BLE001 - any failure to load is a reason to skip the file
        lines = str(error).strip().splitlines()
        reason = f'{type(error).__name__}: {lines[0]}' if lines else type(error).__name__
        return reason if _starts_like_a_checkpoint(path) else f'not a PyTorch checkpoint file (torch.load: {reason})'
    missing = [key for key in ('state_dict', 'meta') if not isinstance(checkpoint, dict) or key not in checkpoint]
    return f'no {" and no ".join(missing)} in it' if missing else None


def _starts_like_a_checkpoint(path: str) -> bool:
    """Whether the file begins as torch.save's files do (a zip archive, or a pickle in the legacy format), as a
    truncated checkpoint does too; torch.load's own message then says what is wrong."""
    try:
        with open(path, 'rb') as f:
            return f.read(len(ZIP_MAGIC)).startswith((ZIP_MAGIC, PICKLE_MAGIC))
    except OSError:
        return True


def resume_candidates(work_dir: str) -> List[str]:
    """``last_checkpoint``'s target, then the numbered checkpoints of its folder and the work dir, newest first."""
    first, folders = [], [work_dir]
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            target = f.read().strip()
        if target:
            first, folders = [target], [osp.dirname(target) or '.', work_dir]
    numbered = {osp.abspath(p) for folder in folders for p in glob.glob(osp.join(glob.escape(folder), '*_*.pth'))
                if CHECKPOINT_NAME.fullmatch(osp.basename(p))}
    numbered -= {osp.abspath(p) for p in first}
    return first + sorted(numbered, key=lambda p: int(CHECKPOINT_NAME.fullmatch(osp.basename(p)).group(1)),
                          reverse=True)


def find_resume_checkpoint(work_dir: str, log: Callable[[str], None] = print) -> Optional[str]:
    """The newest checkpoint of ``work_dir`` that loads (``log`` gets one line per skipped file); None when
    there is no checkpoint file; SystemExit when there are some and none loads."""
    candidates = resume_candidates(work_dir)
    skipped = []
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        skipped.append(f'{path} ({problem})')
        log(f'Not resuming from {path}: {problem}')
    if any(osp.isfile(path) for path in candidates):
        raise SystemExit(f'--resume: no checkpoint in {work_dir} loads: {"; ".join(skipped)}. Remove them to '
                         'train from scratch, or pass --resume PATH.')
    return None
