"""kernels/partial_sums.py: the last program to arrive sums the others' partials and leaves its counter at zero;
launch plans keep their counters except where a kept tensor would be unsafe, and the launches of one traced graph
share theirs (CPU: the Triton interpreter, and a trace with the kernels compiled for sm_90 in a subprocess; the
kernels that use counters are tested at real shapes on the GPU in their own files)."""
import json

import torch
import triton
import triton.language as tl

from mlla_dense.kernels.launcher import traced_launches
from mlla_dense.kernels.partial_sums import ArrivalCounters, last_to_arrive, live_counters, per_call_counters
from helpers import run


@triton.jit
def _sum_kernel(x_ptr, part_ptr, out_ptr, counter_ptr, N, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    tl.store(part_ptr + pid, tl.sum(tl.load(x_ptr + offs, mask=offs < N, other=0.), 0))
    programs = tl.num_programs(0)
    if last_to_arrive(counter_ptr, programs):
        total = tl.zeros((1,), tl.float32)
        for i in range(0, programs):
            total += tl.load(part_ptr + i + tl.arange(0, 1), cache_modifier='.cg')
        tl.store(out_ptr + tl.arange(0, 1), total)


def test_last_program_sums_and_resets_the_counter():
    counter = torch.zeros(1, dtype=torch.int32)
    for scale in (1.0, -2.0):  # a second launch works only if the first put the counter back to 0
        x = torch.randn(1000) * scale
        part, out = torch.empty(8), torch.full((1,), float('nan'))
        _sum_kernel[(8,)](x, part, out, counter, 1000, BLOCK=128)
        torch.testing.assert_close(out[0], x.sum(), rtol=1e-5, atol=1e-5)
        assert counter.item() == 0


def test_plans_keep_their_counters_except_per_call_and_traced():
    counters = ArrivalCounters(3, torch.device('cpu'))
    kept = counters.get()
    assert kept is counters.get() and any(t is kept for t in live_counters())
    with per_call_counters():
        fresh = counters.get()
    with traced_launches():
        traced = counters.get()
    for t in (fresh, traced):
        assert t is not kept and t.dtype == torch.int32 and not t.any()
        assert not any(t is held for held in live_counters())
    assert counters.get() is kept


def test_launches_of_a_traced_graph_share_one_chain_of_counters():
    """Traced as torch.compile traces (trace_for_gpu.py: AOTAutograd, kernels traced for an H100 without one), the
    backward's four launches that use counters (two LayerNorms, the depthwise conv, a compiled product's bias
    gradient) take one zeroed tensor, each the one the launch before left, so Inductor zeroes it once and updates
    it in place instead of copying fresh zeros before every launch; and no launch writes one tensor through two
    arguments (Inductor would copy it first)."""
    result = run(['python', 'tests/test_kernels/trace_for_gpu.py'], env={'TRITON_INTERPRET': '0'}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    graphs = {g['graph']: g for g in map(json.loads, filter(None, result.stdout.splitlines()))}
    assert graphs['backward'] == dict(graph='backward', int32_zeros=1, counter_launches=4, chained=True,
                                      writes_one_tensor_twice=0)
    assert graphs['forward']['counter_launches'] == graphs['forward']['writes_one_tensor_twice'] == 0


def test_traced_counters_are_shared_within_one_functionalized_trace():
    """Traced launches take one tensor per functionalization mode (one AOTAutograd trace), whatever counts their
    plans need; another trace gets its own; without functionalization every call gets fresh zeros."""
    from torch._subclasses.functional_tensor import FunctionalTensorMode
    small, large = ArrivalCounters(1, torch.device('cpu')), ArrivalCounters(16, torch.device('cpu'))
    with traced_launches():
        with FunctionalTensorMode():
            shared = small.get()
            assert large.get() is shared and small.get() is shared
        with FunctionalTensorMode():
            assert small.get() is not shared
        assert small.get() is not small.get()  # no functionalization: fresh zeros each time
