"""tools/train.py killed (SIGKILL) at random moments, inside checkpoint saves too, and resumed each time: the run
reaches its last iteration, no file under a checkpoint's name is ever truncated, and a kill loses at most the
iterations since the last checkpoint; ``--resume`` skips a truncated checkpoint (what mmengine's own
CheckpointHook leaves when killed while saving) and stops on a broken explicit path. The UperNet MLLA-nano demo
on 32x32 images, on the CPU."""
import glob
import os
import os.path as osp
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

import mlla_dense  # noqa: F401  (allow-lists mmengine's checkpoint types)
from helpers import ROOT, SEG_DEMO, make_tiny_shapes

MAX_ITERS, INTERVAL = 8, 2
ITER_LINE = re.compile(r'Iter\(train\) \[\s*(\d+)/')
RESUMED_LINE = re.compile(r'resumed epoch: \d+, iter: (\d+)')


def options(shapes):
    """A few iterations on 32x32 images, a checkpoint every INTERVAL iterations (only the newest kept), no
    validation."""
    return [f'train_dataloader.dataset.data_root={shapes}/', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'train_dataloader.batch_size=2',
            'train_dataloader.dataset.pipeline.2.scale=(32,32)', 'model.data_preprocessor.size=(32,32)',
            f'train_cfg.max_iters={MAX_ITERS}', f'default_hooks.checkpoint.interval={INTERVAL}',
            'default_hooks.checkpoint.max_keep_ckpts=1', 'default_hooks.logger.interval=1',
            'val_dataloader=None', 'val_cfg=None', 'val_evaluator=None', 'randomness.seed=0']


class Training:
    """tools/train.py in a subprocess (through tests/stalled_write.py), its output read line by line."""

    def __init__(self, args, stall_save=None):
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        if stall_save:
            env.update(STALL_WRITE=str(stall_save), STALL_WRITE_MATCH='iter_*.pth')
        self.process = subprocess.Popen([sys.executable, osp.join(ROOT, 'tests', 'stalled_write.py'),
                                         'tools/train.py', SEG_DEMO, *args], cwd=ROOT, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines, self._queue = [], queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, predicate, timeout=180) -> str:
        """The first output line for which ``predicate`` is true (AssertionError if the output ends first)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            if line is None:
                raise AssertionError('training ended before the expected line:\n' + ''.join(self.lines[-60:]))
            self.lines.append(line)
            if predicate(line):
                return line

    def finish(self, timeout=180) -> int:
        """Read the output to its end; the exit status."""
        try:
            self.wait_for(lambda line: False, timeout)
        except AssertionError:
            pass
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.finish()

    @property
    def output(self):
        return ''.join(self.lines)

    def iterations(self):
        return [i for i in map(logged_iter, self.lines) if i is not None]


def logged_iter(line):
    match = ITER_LINE.search(line)
    return int(match.group(1)) if match else None


def checkpoint_iter(path):
    return int(re.fullmatch(r'iter_(\d+)\.pth', osp.basename(path)).group(1))


def check_checkpoints(work_dir) -> int:
    """Every file under a checkpoint's name loads and last_checkpoint names one; the newest's iteration."""
    paths = glob.glob(osp.join(work_dir, 'iter_*.pth'))
    for path in paths:
        assert torch.load(path, map_location='cpu')['meta']['iter'] == checkpoint_iter(path), path
    if osp.exists(osp.join(work_dir, 'last_checkpoint')):
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            assert f.read().strip() in paths
    return max(map(checkpoint_iter, paths), default=0)


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_tiny_shapes(tmp_path_factory.mktemp('kill') / 'shapes', num_train=8, num_val=1)


def truncate_as_a_killed_save(work_dir, step):
    """What mmengine's CheckpointHook leaves when killed while saving ``step``: a truncated iter_<step>.pth (here
    half of the newest checkpoint) that last_checkpoint names."""
    newest = max(glob.glob(osp.join(work_dir, 'iter_*.pth')), key=checkpoint_iter)
    with open(newest, 'rb') as f:
        data = f.read()
    path = osp.join(work_dir, f'iter_{step}.pth')
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(path)
    return path


@pytest.mark.parametrize('kills,seed', [pytest.param(2, 0, id='short'),
                                        pytest.param(8, 1, id='long', marks=pytest.mark.long)])
def test_killed_training_resumes_to_the_end(shapes, tmp_path, kills, seed):
    """Kill i is inside a checkpoint save for i = 0 and at random otherwise: half the time inside the k-th save of
    the run (random k), else at a random moment after a random iteration. Before the last run, a truncated newest
    checkpoint is added, which it has to skip."""
    rng = random.Random(seed)
    args = ['--work-dir', str(tmp_path), '--resume', '--cfg-options', *options(shapes)]
    reached, truncated = None, None
    for kill in range(kills + 1):
        start = check_checkpoints(str(tmp_path))
        if start == MAX_ITERS:  # a kill came after the last save
            break
        if kill == kills:
            truncated = truncate_as_a_killed_save(str(tmp_path), start + INTERVAL)
        during_save = kill < kills and (kill == 0 or rng.random() < 0.5)
        first_stall = 2 if kill == 0 else 1  # the truncated checkpoint of the last run needs one to fall back to
        stall = rng.randint(first_stall, (MAX_ITERS - start) // INTERVAL) if during_save else None
        training = Training(args, stall_save=stall)
        resumed = training.wait_for(lambda line: RESUMED_LINE.search(line) or 'training from scratch' in line)
        match = RESUMED_LINE.search(resumed)
        resumed_iter = int(match.group(1)) if match else 0
        assert resumed_iter == start, resumed  # the newest checkpoint that loads
        if reached is not None:
            assert reached - resumed_iter <= INTERVAL  # lost at most the iterations since the last checkpoint
        if kill == kills:
            assert training.finish() == 0, training.output[-4000:]
            assert f'Not resuming from {truncated}: RuntimeError: PytorchStreamReader failed reading zip archive' \
                in training.output
            break
        if stall:
            training.wait_for(lambda line: line.startswith(f'STALLED iter_{start + stall * INTERVAL}.pth'))
        else:
            target = rng.randint(start + 1, MAX_ITERS - 1)
            training.wait_for(lambda line: logged_iter(line) == target)
            time.sleep(rng.uniform(0, 0.5))
        training.kill()
        reached = max(training.iterations(), default=start)
    assert check_checkpoints(str(tmp_path)) == MAX_ITERS
    assert not glob.glob(osp.join(str(tmp_path), '.*.partial'))


def test_resume_from_a_broken_path_is_an_error(tmp_path):
    broken = tmp_path / 'iter_4.pth'
    broken.write_bytes(b'PK\x03\x04 the first bytes of a checkpoint')
    training = Training(['--work-dir', str(tmp_path), '--resume', str(broken)])
    assert training.finish() != 0
    assert f'--resume {broken}: cannot resume from this checkpoint: RuntimeError: PytorchStreamReader' \
        in training.output
