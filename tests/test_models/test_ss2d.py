"""SS2D's core (models/layers/ss2d.py): the cross-scan projections, the four-path scan and the merge give the same
result and gradients with the Triton scan as with the reference, and trace into one torch.compile graph."""
import torch

from mlla_dense.kernels.backend import forced_backend
from mlla_dense.models.layers.ss2d import ss2d_scan


def ss2d_inputs(seed=3, b=1, d=8, h=5, w=7, n=1, rank=2):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, h, w, d, generator=gen)
    return [x, torch.randn(4, rank + 2 * n, d, generator=gen) * 0.3, torch.randn(4, d, rank, generator=gen) * 0.3,
            torch.randn(4, d, generator=gen) * 0.1, torch.randn(4 * d, n, generator=gen) * 0.3,
            torch.randn(4 * d, generator=gen)]


def test_ss2d_triton_matches_reference():
    """The whole SS2D core (cross-scan, projections, scan, cross-merge) with either backend."""
    inputs = ss2d_inputs()
    outs, grads = [], []
    for name in ('torch', 'triton'):
        with forced_backend(name):
            leaves = [t.clone().requires_grad_() for t in inputs]
            out = ss2d_scan(*leaves)
            outs.append(out)
            grads.append(torch.autograd.grad(out.square().sum(), leaves))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_ss2d_compiles_to_one_graph(use_backend):
    """Under torch.compile the kernels are triton ops: no graph break, same output and gradients as eager
    (aot_eager runs dynamo and AOT autograd with the ops' fake implementations, which is what can break)."""
    use_backend('triton')

    def fn(*args):
        return ss2d_scan(*args).square().sum()

    inputs = ss2d_inputs()
    explanation = torch._dynamo.explain(fn)(*inputs)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    leaves = [t.clone().requires_grad_() for t in inputs]
    eager = torch.autograd.grad(fn(*leaves), leaves)
    compiled = torch.autograd.grad(torch.compile(fn, fullgraph=True, backend='aot_eager')(*leaves), leaves)
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(b, a)
