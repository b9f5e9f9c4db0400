"""Programmatic dependent launch (Hopper and later): a kernel launched with it may start while the previous kernel
in the stream is still finishing, so the launch latency between two short kernels overlaps the first one's tail.

Every kernel launched this way calls :func:`follow_previous_grid` before it touches memory: it waits until the
previous kernel has completed and its writes are visible (so reads and writes keep stream order), then lets the
next kernel's programs start launching. Measured on an H100 for the linear attention (benchmarks/NOTES.md):
1.5-2.5 us less per forward and up to 3 us less per forward+backward, bit-identical results.
``MLLA_DENSE_DEPENDENT_LAUNCH=0`` turns it off.
"""
import os

import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
from triton.runtime import driver


@triton.jit
def follow_previous_grid(ENABLED: tl.constexpr):
    """Wait for the previous kernel of the stream, then release the next one (no-op unless ENABLED)."""
    if ENABLED:
        gdc_wait()
        gdc_launch_dependents()


def dependent_launch() -> bool:
    """Whether to launch with programmatic dependent launch: for sm_90+ targets, not under the Triton interpreter
    (which has no grid dependency control), unless ``MLLA_DENSE_DEPENDENT_LAUNCH=0``."""
    if os.environ.get('TRITON_INTERPRET') == '1' or os.environ.get('MLLA_DENSE_DEPENDENT_LAUNCH', '1') == '0':
        return False
    target = driver.active.get_current_target()
    return target.backend == 'cuda' and isinstance(target.arch, int) and target.arch >= 90
