"""find_resume_checkpoint: the newest checkpoint that loads; truncated or foreign files are skipped and named."""
import pytest
import torch

import mlla_dense  # noqa: F401  (allow-lists mmengine's checkpoint types)
from mlla_dense.utils.resume import checkpoint_problem, find_resume_checkpoint, resume_candidates
from toy_runner import make_runner


@pytest.fixture
def work_dir(tmp_path):
    """iter_1.pth .. iter_3.pth and last_checkpoint naming iter_3.pth."""
    make_runner(tmp_path, max_iters=3).train()
    return tmp_path


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def test_newest_first(work_dir):
    (work_dir / 'iter_10.pth').write_bytes(b'')
    (work_dir / 'best_loss_iter_2.pth').write_bytes(b'')
    names = [p.rsplit('/', 1)[1] for p in resume_candidates(str(work_dir))]
    assert names == ['iter_3.pth', 'iter_10.pth', 'iter_2.pth', 'iter_1.pth']
    assert find_resume_checkpoint(str(work_dir)) == str(work_dir / 'iter_3.pth')


def test_skips_truncated_newest(work_dir):
    truncate(work_dir / 'iter_3.pth')
    log = []
    assert find_resume_checkpoint(str(work_dir), log=log.append) == str(work_dir / 'iter_2.pth')
    assert len(log) == 1 and log[0].startswith(f'Not resuming from {work_dir / "iter_3.pth"}: ')
    assert 'PytorchStreamReader failed reading zip archive' in log[0]


def test_problems(tmp_path):
    torch.save({'state_dict': {}}, tmp_path / 'weights.pth')
    assert checkpoint_problem(str(tmp_path / 'weights.pth')) == 'no meta in it'
    assert checkpoint_problem(str(tmp_path / 'missing.pth')) == 'no such file'
    (tmp_path / 'notes.pth').write_text('not a checkpoint at all\n')
    assert checkpoint_problem(str(tmp_path / 'notes.pth')).startswith('not a PyTorch checkpoint file (torch.load: ')
    (tmp_path / 'empty.pth').write_bytes(b'')
    assert checkpoint_problem(str(tmp_path / 'empty.pth')) == 'empty file'
    assert checkpoint_problem(str(tmp_path)) == 'not a file'
    torch.save({'state_dict': {}, 'meta': {}}, tmp_path / 'legacy.pth', _use_new_zipfile_serialization=False)
    assert checkpoint_problem(str(tmp_path / 'legacy.pth')) is None
    truncate(tmp_path / 'legacy.pth')
    problem = checkpoint_problem(str(tmp_path / 'legacy.pth'))
    assert problem is not None and not problem.startswith('not a PyTorch checkpoint file')


def test_none_loads_is_an_error(work_dir):
    for name in ('iter_1.pth', 'iter_2.pth', 'iter_3.pth'):
        truncate(work_dir / name)
    with pytest.raises(SystemExit, match=r'no checkpoint in .* loads: .*iter_3\.pth \(RuntimeError: .*iter_1\.pth'):
        find_resume_checkpoint(str(work_dir), log=lambda line: None)


def test_no_checkpoint_starts_from_scratch(tmp_path):
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_5.pth'))
    log = []
    assert find_resume_checkpoint(str(tmp_path), log=log.append) is None
    assert log == [f'Not resuming from {tmp_path / "iter_5.pth"}: no such file']
