"""How the chunked passes split the tokens: each program sums one chunk of tokens into a partial result, and the
partials are reduced afterwards in a fixed order (deterministic, no atomic sums): by the last program to finish
(:func:`last_to_arrive`) or by a second launch."""
import functools
import weakref

import torch
import triton
import triton.language as tl

from .launcher import is_traced
from .switch import Switch


@functools.lru_cache(maxsize=None)
def _multiprocessors(device_index: int) -> int:
    """SM count of a CUDA device (a driver query: cached, as the chunked passes ask on every launch)."""
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def chunking(n_tokens: int, n_rows: int, device, programs_per_sm: int, block_n: int):
    """Split N tokens into chunks (multiples of the token tile) so that a chunked grid of ``n_rows`` rows
    fills the device with at most ``programs_per_sm`` programs per SM (a few chunks on CPU). At most: where
    that many programs fit on an SM at once, the grid runs as one wave; one program more per SM would wait for
    a whole second one (measured: 9 -> 8 chunks of 32 rows, 2 programs per SM, took MLLA-T stage 4's
    linear attention forward+backward 73 -> 70 us, benchmarks/NOTES.md).

    Returns (num_chunks, tokens_per_chunk).
    """
    if device.type == 'cuda':
        index = device.index if device.index is not None else torch.cuda.current_device()
        target = programs_per_sm * _multiprocessors(index)
    else:
        target = 4
    max_chunks = triton.cdiv(n_tokens, block_n)
    num_chunks = max(1, min(max_chunks, target // n_rows))
    tokens_per_chunk = triton.cdiv(triton.cdiv(n_tokens, num_chunks), block_n) * block_n
    return triton.cdiv(n_tokens, tokens_per_chunk), tokens_per_chunk


@triton.jit
def last_to_arrive(counter_ptr, expected):
    """Whether this program is the last of ``expected`` programs to arrive at the int32 ``counter_ptr`` (0 before
    the first arrives); that program sets it back to 0 and sees every store the others made before arriving.

    It lets the program that stores the last partial sum the partials up in a fixed order, instead of a second
    launch doing it (deterministic, unlike atomic sums). Partials written by other programs must be read with
    ``cache_modifier='.cg'`` (from L2: another SM wrote them).
    """
    tl.debug_barrier()  # every thread's partial stores precede the arrival
    arrived = tl.atomic_add(counter_ptr, 1, sem='acq_rel')
    last = arrived == expected - 1
    tl.atomic_xchg(counter_ptr, 0, mask=last)
    return last


_kept = weakref.WeakSet()
_per_call = Switch()  # on inside per_call_counters()


class ArrivalCounters:
    """``count`` int32 counters of one launch plan for :func:`last_to_arrive`, which the kernels leave at zero.

    ``get()`` returns the plan's own counters, allocated at first use and kept; while torch.compile traces, the
    counters that all launches of the traced graph share (:func:`_traced_counters`); and fresh zeros (one more
    launch) where a kept tensor would be unsafe: inside :func:`per_call_counters` (code that runs in a memory pool
    that may hand the memory out again, such as cudagraph trees' warm-up of an opaque custom op) and while a CUDA
    graph is being captured before the plan has counters (zeros made then exist only in replays). Launches of one
    plan must not overlap (one stream).
    """

    def __init__(self, count: int, device):
        self.count = count
        self.device = device
        self._tensor = None

    def get(self) -> torch.Tensor:
        if is_traced():
            return _traced_counters(self.count, self.device)
        per_call = _per_call.on
        if self._tensor is not None and not per_call:
            return self._tensor
        fresh = torch.zeros(self.count, dtype=torch.int32, device=self.device)
        if not (per_call or (fresh.is_cuda and torch.cuda.is_current_stream_capturing())):
            self._tensor = fresh
            _kept.add(fresh)
        return fresh


_counters_of_trace = weakref.WeakKeyDictionary()  # functionalizing trace -> the counters its launches share
_SHARED_COUNT = 256  # int32 counters shared in a trace; a launch needing more gets fresh zeros


def _traced_counters(count: int, device) -> torch.Tensor:
    """Counters for a launch that torch.compile traces. All launches of one functionalized trace (AOTAutograd's
    joint forward+backward) take the same zeroed tensor, so functionalization chains their writes to it and
    Inductor makes the chain in place: one zero fill per graph instead of fresh zeros, and a copy of them, per
    launch. Each launch leaves the counters at zero, and the chain orders the launches. Without
    functionalization (dynamo's run on fake tensors) fresh zeros."""
    mode = torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.FUNCTIONAL)
    if mode is None or count > _SHARED_COUNT:
        return torch.zeros(count, dtype=torch.int32, device=device)
    counters = _counters_of_trace.get(mode)
    if counters is None or counters.device != torch.device(device):
        counters = _counters_of_trace[mode] = torch.zeros(_SHARED_COUNT, dtype=torch.int32, device=device)
    return counters


# Within: every launch takes fresh zero counters instead of its plan's kept ones.
per_call_counters = _per_call.turned_on


def live_counters() -> list:
    """Every counter tensor that launch plans keep now (what a CUDA graph capturing the kernels reads from outside
    its inputs)."""
    return list(_kept)
