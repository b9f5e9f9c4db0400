"""Choice between the Triton kernels and the PyTorch references, shared by every op.

``MLLA_DENSE_BACKEND`` (read at each call, so tests and benchmarks can switch it):

- ``auto`` (default): Triton for CUDA tensors, the reference for everything else;
- ``triton``: always Triton; on CPU tensors this needs ``TRITON_INTERPRET=1`` (how CI tests the kernels);
- ``torch``: always the reference.
"""
import contextlib
import os

import torch

BACKENDS = ('auto', 'triton', 'torch')


def selected_backend() -> str:
    """The backend named by ``MLLA_DENSE_BACKEND``; raises on an unknown name instead of guessing."""
    name = os.environ.get('MLLA_DENSE_BACKEND', 'auto').strip().lower() or 'auto'
    if name not in BACKENDS:
        raise ValueError(f"MLLA_DENSE_BACKEND={name!r} is not one of {', '.join(BACKENDS)}")
    return name


def use_triton(tensor: torch.Tensor) -> bool:
    """Whether an op given ``tensor`` should run its Triton kernels."""
    name = selected_backend()
    if name == 'torch':
        return False
    if name == 'auto':
        return tensor.is_cuda
    if not tensor.is_cuda and os.environ.get('TRITON_INTERPRET') != '1':
        raise RuntimeError('MLLA_DENSE_BACKEND=triton on CPU tensors needs TRITON_INTERPRET=1 '
                           '(the Triton interpreter); use MLLA_DENSE_BACKEND=torch or auto for the reference path')
    return True


@contextlib.contextmanager
def forced_backend(name: str):
    """Run the enclosed code with ``MLLA_DENSE_BACKEND=name`` (e.g. to time both paths in one process)."""
    if name not in BACKENDS:
        raise ValueError(f"backend {name!r} is not one of {', '.join(BACKENDS)}")
    old = os.environ.get('MLLA_DENSE_BACKEND')
    os.environ['MLLA_DENSE_BACKEND'] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ['MLLA_DENSE_BACKEND']
        else:
            os.environ['MLLA_DENSE_BACKEND'] = old
