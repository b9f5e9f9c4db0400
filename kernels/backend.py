"""Choice between the Triton kernels and the PyTorch references, shared by every op.

``MLLA_DENSE_BACKEND``, read once when the package is imported (:func:`forced_backend` switches it within a
process, e.g. to time both paths or to test the kernels):

- ``auto`` (default): Triton for CUDA tensors, the reference for everything else;
- ``triton``: always Triton; on CPU tensors this needs ``TRITON_INTERPRET=1`` (how CI tests the kernels);
- ``torch``: always the reference.
"""
import contextlib
import os

import torch

BACKENDS = ('auto', 'triton', 'torch')
_INTERPRETER = os.environ.get('TRITON_INTERPRET') == '1'


def _checked(name: str) -> str:
    name = name.strip().lower() or 'auto'
    if name not in BACKENDS:
        raise ValueError(f"MLLA_DENSE_BACKEND={name!r} is not one of {', '.join(BACKENDS)}")
    return name


_selected = _checked(os.environ.get('MLLA_DENSE_BACKEND', 'auto'))


def selected_backend() -> str:
    """The backend in use: ``MLLA_DENSE_BACKEND`` at import, or the one :func:`forced_backend` set."""
    return _selected


def use_triton(tensor: torch.Tensor) -> bool:
    """Whether an op given ``tensor`` should run its Triton kernels."""
    if _selected == 'auto':
        return tensor.is_cuda
    if _selected == 'torch':
        return False
    if not _INTERPRETER and not tensor.is_cuda:
        raise RuntimeError('MLLA_DENSE_BACKEND=triton on CPU tensors needs TRITON_INTERPRET=1 '
                           '(the Triton interpreter); use MLLA_DENSE_BACKEND=torch or auto for the reference path')
    return True


@contextlib.contextmanager
def forced_backend(name: str):
    """Run the enclosed code with backend ``name`` ('auto', 'triton' or 'torch')."""
    global _selected
    old, _selected = _selected, _checked(name)
    try:
        yield
    finally:
        _selected = old
