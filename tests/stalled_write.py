"""Test helper: one of mlla_dense's atomic file writes stops halfway, so that a test can kill the writer there.

``stall_nth_write(n, name_pattern)`` patches :mod:`mlla_dense.utils.atomic_file`: the n-th write of a file whose
name matches ``name_pattern`` writes half of its bytes, flushes them to disk, prints ``STALLED <final name>`` and
sleeps. Run as a script, ``python tests/stalled_write.py SCRIPT ARGS...`` runs SCRIPT with the stall set by the
environment (``STALL_WRITE``: n, ``STALL_WRITE_MATCH``: the pattern; no stall without ``STALL_WRITE``).
"""
import fnmatch
import os
import os.path as osp
import runpy
import sys
import time

import mlla_dense.utils.atomic_file as atomic_file


class _StallingFile:
    """A binary file whose ``write`` writes half of the bytes, flushes them and sleeps."""

    def __init__(self, file, name):
        self._file, self._name = file, name

    def write(self, data):
        self._file.write(data[:len(data) // 2])
        self._file.flush()
        os.fsync(self._file.fileno())
        print(f'STALLED {self._name}', flush=True)
        time.sleep(3600)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._file.__exit__(*exc)


def stall_nth_write(n: int, name_pattern: str = '*') -> None:
    left = n

    def stalling_open(path, *args, **kwargs):
        nonlocal left
        file = open(path, *args, **kwargs)
        name = osp.basename(path)[1:].rsplit('.', 2)[0]  # the temporary file is .<name>.<random>.partial
        if fnmatch.fnmatch(name, name_pattern):
            left -= 1
            if left == 0:
                return _StallingFile(file, name)
        return file

    atomic_file.open = stalling_open


if __name__ == '__main__':
    if os.environ.get('STALL_WRITE'):
        stall_nth_write(int(os.environ['STALL_WRITE']), os.environ.get('STALL_WRITE_MATCH', '*'))
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name='__main__')
