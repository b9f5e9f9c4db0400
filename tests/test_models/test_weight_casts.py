"""Weight casts for autocast as one autograd node (models/layers/weight_casts.py) and where MLLA uses them: the
values and gradients of autocast's own casts, with one cast launch per direction instead of one per tensor.

CPU: through the Triton interpreter, which truncates where GPUs round to nearest, so float32 -> bfloat16 is
compared within one bfloat16 step there and exactly on a GPU; bfloat16 -> float32 is exact on both."""
import collections

import pytest
import torch

import mlla_dense  # noqa: F401  (registers the backbones)
from mlla_dense.kernels import launcher
from mlla_dense.models.backbones.mlla import MLLA
from mlla_dense.models.backbones.vmamba import VMamba
from mlla_dense.models.layers.weight_casts import autocast_weights

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
ROUNDED = dict(rtol=0, atol=0) if DEVICE == 'cuda' else dict(rtol=8e-3, atol=1e-6)


@pytest.fixture
def launches(monkeypatch):
    """Counts of kernel launches by kernel name while the test runs."""
    counts = collections.Counter()
    call = launcher.Launch.__call__

    def counted(self, *args):
        counts[self.kernel.__name__] += 1
        return call(self, *args)

    monkeypatch.setattr(launcher.Launch, '__call__', counted)
    return counts


def weights():
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(16, 4, 3, 3, generator=gen).to(DEVICE).to(memory_format=torch.channels_last),
            torch.randn(16, generator=gen).to(DEVICE), torch.randn(32, 16, 1, 1, generator=gen).to(DEVICE),
            torch.randn(5, 7, generator=gen).to(DEVICE).t()]


def test_casts_and_gradients_are_autocasts(use_backend, launches):
    """Under autocast: each output is the weight's autocast cast with its strides, and each weight's gradient is
    what flows back through that cast (the bfloat16 gradient in float32, exactly), None-free for unused outputs;
    one launch forward, one backward. Outside autocast: the weights themselves."""
    use_backend('triton')
    tensors = [t.requires_grad_() for t in weights()]
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        casts = autocast_weights(tensors)
    assert launches['_cast_kernel'] == 1
    for t, cast in zip(tensors, casts):
        assert cast.dtype == torch.bfloat16 and cast.stride() == t.stride()
        torch.testing.assert_close(cast, t.detach().to(torch.bfloat16), **ROUNDED)
    gen = torch.Generator().manual_seed(1)
    outgoing = [torch.randn(c.shape, generator=gen).to(DEVICE, torch.bfloat16) for c in casts[:3]]
    grads = torch.autograd.grad(casts[:3], tensors[:3], outgoing)
    assert launches['_cast_kernel'] == 2
    for grad, out, t in zip(grads, outgoing, tensors):
        assert grad.dtype == torch.float32 and torch.equal(grad, out.float())
    assert torch.autograd.grad(casts[3].sum(), tensors[3])[0].dtype == torch.float32
    assert autocast_weights(tensors) == tensors


@pytest.mark.parametrize('name', ['mlla', 'vmamba'])
def test_backbones_cast_once_per_module(name, use_backend, launches):
    """MLLA and VMamba under autocast with the fused blocks: one pack launch casts every block's weights; the stem
    and each downsampling cast their weights in one launch forward (not again where MLLA's patch merging
    recomputes its expansion) and one backward. The outputs are as far from float32 ones as the references' in
    bfloat16 are, and every parameter gets its gradient."""
    torch.manual_seed(0)
    if name == 'mlla':
        model = MLLA(embed_dim=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), drop_path_rate=0.0)
    else:  # two stages: the interpreter's scan is slow
        model = VMamba(dims=16, depths=(1, 1), out_indices=(0, 1), ssm_ratio=2.0, drop_path_rate=0.0)
    model = model.to(DEVICE).train()
    image = torch.randn(2, 3, 32, 48 if name == 'mlla' else 32, device=DEVICE)
    results = {}
    for backend, dtype in (('torch', torch.float32), ('torch', torch.bfloat16), ('triton', torch.bfloat16)):
        use_backend(backend)
        launches.clear()
        model.zero_grad(set_to_none=True)
        with torch.autocast(DEVICE, dtype=dtype, enabled=dtype != torch.float32):
            outs = model(image)
        sum(o.float().square().mean() for o in outs).backward()
        results[backend, dtype] = ([o.detach().float() for o in outs], {n: p.grad for n, p in model.named_parameters()})
    assert launches['_pack_kernel'] == 1
    assert launches['_cast_kernel'] == 2 * len(model.layers)  # the stem and each downsampling, both ways
    truth = results['torch', torch.float32][0]
    for ref, out, exact in zip(results['torch', torch.bfloat16][0], results['triton', torch.bfloat16][0], truth):
        assert (out - exact).norm() <= 1.5 * (ref - exact).norm() + 1e-3 * exact.norm()
    assert all(g is not None for g in results['triton', torch.bfloat16][1].values())


def test_compiled_casts_are_one_cast_end_to_end():
    """Traced by torch.compile under autocast, the weights are cast as one tensor laid end to end (one
    concatenation and one cast in the graph, which Inductor fuses into one kernel, where it makes one per weight):
    each output has autocast's values, contiguous, and each weight's gradient is the bfloat16 gradient in
    float32."""
    graphs = []

    def recording(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    @torch.compile(backend=recording, fullgraph=True)
    def cast(*tensors):
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            return autocast_weights(tensors)

    torch._dynamo.reset()
    tensors = [t.requires_grad_() for t in weights()]
    casts = cast(*tensors)
    calls = [n.target for n in graphs[0].graph.nodes if n.op in ('call_function', 'call_method')]
    assert calls.count(torch.cat) == 1 and sum(t in ('to', torch.Tensor.to) for t in calls) == 1
    for t, c in zip(tensors, casts):
        assert c.dtype == torch.bfloat16 and c.is_contiguous() and torch.equal(c, t.detach().bfloat16())
    gen = torch.Generator().manual_seed(1)
    outgoing = [torch.randn(c.shape, generator=gen).to(DEVICE, torch.bfloat16) for c in casts]
    for grad, out in zip(torch.autograd.grad(casts, tensors, outgoing), outgoing):
        assert grad.dtype == torch.float32 and torch.equal(grad, out.float())
