"""atomic_write: a writer killed midway leaves the old file as it was, never a truncated one."""
import os.path as osp
import signal
import subprocess
import sys

from mmengine.fileio import get_file_backend

from mlla_dense.utils.atomic_file import atomic_write, remove_partial_files

TESTS = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_atomic_write_and_backend(tmp_path):
    path = tmp_path / 'sub' / 'file.bin'
    atomic_write(path, b'old')
    atomic_write(path, b'new')
    assert path.read_bytes() == b'new'
    backend = get_file_backend(str(tmp_path), backend_args=dict(backend='atomic_local'))
    backend.put(b'bytes', str(tmp_path / 'a.pth'))
    backend.put_text('text', str(tmp_path / 'last_checkpoint'))
    assert (tmp_path / 'a.pth').read_bytes() == b'bytes' and (tmp_path / 'last_checkpoint').read_text() == 'text'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.pth', 'last_checkpoint', 'sub']


def test_killed_writer_leaves_old_file(tmp_path):
    path = tmp_path / 'iter_4.pth'
    path.write_bytes(b'old checkpoint')
    new = bytes(range(256)) * 4096
    code = (f'import sys; sys.path.insert(0, {TESTS!r}); import stalled_write; stalled_write.stall_nth_write(1); '
            f'from mlla_dense.utils.atomic_file import atomic_write; atomic_write({str(path)!r}, '
            'bytes(range(256)) * 4096)')
    writer = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == 'STALLED iter_4.pth'
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert path.read_bytes() == b'old checkpoint'
    partial = [p for p in tmp_path.iterdir() if p.name != 'iter_4.pth']
    assert len(partial) == 1 and partial[0].read_bytes() == new[:len(new) // 2]
    assert remove_partial_files(str(tmp_path)) == [str(partial[0])]
    assert [p.name for p in tmp_path.iterdir()] == ['iter_4.pth']
