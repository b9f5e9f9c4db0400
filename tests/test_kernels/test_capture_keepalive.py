"""mlla_dense.kernels.capture_keepalive: the tensors the kernel packages cache (today the RoPE tables), which
a CUDA graph that read them must keep alive; the graph machinery takes them from there."""
import torch

from mlla_dense.kernels.capture_keepalive import capture_keepalive
from mlla_dense.kernels.linear_attention.rope import rope_tables


def test_holds_the_cached_rope_tables():
    cos, sin = rope_tables(5, 7, 8, torch.device('cpu'))
    held = capture_keepalive()
    assert any(t is cos for t in held) and any(t is sin for t in held)


def test_training_graphs_live_in_the_runtime_package():
    from mlla_dense.runtime import training_graphs
    assert training_graphs.capture_keepalive is capture_keepalive
