"""mlla_dense.kernels.capture_keepalive: the tensors the kernel packages cache (the RoPE tables, the launch
plans' arrival counters), which a CUDA graph that read them must keep alive; the graph machinery takes them from
there."""
import torch

from mlla_dense.kernels.capture_keepalive import capture_keepalive
from mlla_dense.kernels.linear_attention.rope import rope_tables


def test_holds_the_cached_rope_tables():
    cos, sin = rope_tables(5, 7, 8, torch.device('cpu'))
    held = capture_keepalive()
    assert any(t is cos for t in held) and any(t is sin for t in held)


def test_holds_the_plans_arrival_counters(use_backend):
    from mlla_dense.kernels.elementwise import _column_sums_plans, column_sums
    use_backend('triton')
    column_sums(torch.randn(2, 9, 16))
    counters = [plan.counters.get() for plan in _column_sums_plans.cache.values()]
    held = capture_keepalive()
    assert counters and all(any(t is c for t in held) for c in counters)


def test_training_graphs_live_in_the_runtime_package():
    from mlla_dense.runtime import training_graphs
    assert training_graphs.capture_keepalive is capture_keepalive
