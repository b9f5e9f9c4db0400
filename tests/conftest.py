"""Test-session setup: kernels run through the Triton interpreter when there is no GPU.

TRITON_INTERPRET must be set before Triton compiles (decorates) any kernel, so it is set here, before the
package is imported. With CUDA present the kernels compile for the GPU and `gpu`-marked tests run.
The tests folder is put on sys.path for the shared helpers (helpers.py, plain_mlla.py). Under pytest-xdist (make
test runs two workers) each worker keeps to one torch thread.
"""
import contextlib
import os
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')
    # The interpreter's kernels cannot be traced into a graph (wrap_triton leaves them as they are), so the ops
    # stay opaque under torch.compile here; on a GPU Inductor traces into them.
    import torch._functorch.config
    torch._functorch.config.decompose_custom_triton_ops = False
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if os.environ.get('PYTEST_XDIST_WORKER'):
    torch.set_num_threads(1)  # the workers share the cores (make test): one thread each, not oversubscribed


def pytest_addoption(parser):
    parser.addoption('--long', action='store_true', help='also run the long versions of tests (marked long)')


def pytest_configure(config):
    config.addinivalue_line('markers', 'gpu: needs a CUDA device (skipped without one; run on the GPU machine)')
    config.addinivalue_line('markers', 'long: the long version of a test whose short version always runs '
                                       '(skipped unless --long)')


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason='needs a CUDA device')
    skip_long = pytest.mark.skip(reason='long version: run with --long')
    for item in items:
        if 'gpu' in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if item.get_closest_marker('long') and not config.getoption('--long'):
            item.add_marker(skip_long)


@pytest.fixture
def use_backend():
    """``use_backend(name)`` runs the rest of the test with the kernels' backend ``name`` (see
    mlla_dense.kernels.backend)."""
    from mlla_dense.kernels.backend import forced_backend
    with contextlib.ExitStack() as stack:
        yield lambda name: stack.enter_context(forced_backend(name))
