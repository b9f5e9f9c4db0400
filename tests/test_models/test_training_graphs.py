"""Backbones with ``cuda_graphs``: the training forward and backward replayed as CUDA graphs give the eager
model's outputs, parameter gradients and BatchNorm statistics over several optimizer steps, and calls where a
replay would be wrong (a second forward before the backward, too many input shapes, no gradients) run eagerly.
On CPU the option is checked for its refusals and its eager path; the replays run on the GPU machine."""
import copy
import pickle
import warnings

import pytest
import torch

from mlla_dense.models.backbones.mlla import MLLA
from mlla_dense.models.backbones.vmamba import VMamba

SMALL_MLLA = dict(embed_dim=32, depths=(1, 2, 1, 1), num_heads=(1, 2, 4, 8), drop_path_rate=0.0)
SMALL_VMAMBA = dict(dims=16, depths=(1, 1, 2, 1), ssm_ratio=2.0, ssm_d_state=2, drop_path_rate=0.0)
# Relative L2 error allowed between replay and eager: the graphs run the eager model's kernels in its order,
# so only reductions whose order differs between launches could move results.
TOLERANCE = {'fp32': 1e-5, 'bf16': 1e-3}


def relative_error(actual, expected):
    return ((actual.double() - expected.double()).norm() / expected.double().norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize('bad', [-1, 1.5, '2'])
def test_bad_cuda_graphs_is_refused(bad):
    with pytest.raises(ValueError, match='cuda_graphs'):
        MLLA(**SMALL_MLLA, cuda_graphs=bad)


def test_cpu_input_runs_eagerly_and_copies_start_empty():
    torch.manual_seed(0)
    model = MLLA(**SMALL_MLLA, cuda_graphs=2).train()
    plain = MLLA(**SMALL_MLLA).train()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 96)
    for a, b in zip(model(x), plain(x)):
        assert torch.equal(a, b)
    assert not model.training_graphs._captures
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert clone.training_graphs is not model.training_graphs
        assert clone.training_graphs.max_signatures == 2 and not clone.training_graphs._captures
    with pytest.raises(ValueError, match=r'expects images \(B, 3, H, W\)'):
        model(torch.randn(2, 4, 64, 96))


def eager_and_graphed(cls, kwargs, max_signatures=2):
    torch.manual_seed(0)
    eager = cls(**kwargs).cuda().train()
    graphed = cls(**kwargs, cuda_graphs=max_signatures).cuda().train()
    graphed.load_state_dict(eager.state_dict())
    return eager, graphed


def forward_backward(model, xs, dtype):
    """Outputs of ``model`` on each x (one backward of a weighted sum over all calls), detached."""
    with torch.autocast('cuda', dtype=torch.bfloat16, enabled=dtype == 'bf16'):
        outs = [model(x) for x in xs]
    gen = torch.Generator('cuda').manual_seed(5)
    loss = sum((o.float() * torch.randn(o.shape, device='cuda', generator=gen)).sum() for call in outs for o in call)
    loss.backward()
    return [o.detach() for call in outs for o in call]


def assert_same_state(graphed, eager, tol):
    for (name, a), b in zip(graphed.named_parameters(), eager.parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if b.grad is not None:
            error = relative_error(a.grad, b.grad)
            assert error < tol, f'{name}.grad: relative error {error:.3g}'
    for (name, a), b in zip(graphed.named_buffers(), eager.buffers()):
        error = relative_error(a.float(), b.float())
        assert error < tol, f'{name}: relative error {error:.3g}'


@pytest.mark.gpu
@pytest.mark.parametrize('cls,kwargs', [(MLLA, SMALL_MLLA), (VMamba, SMALL_VMAMBA)], ids=['mlla', 'vmamba'])
@pytest.mark.parametrize('dtype', ['fp32', 'bf16'])
def test_replays_match_eager_over_optimizer_steps(cls, kwargs, dtype):
    eager, graphed = eager_and_graphed(cls, kwargs)
    # Adam moves every weight by ~lr per step whatever the gradient's scale: visible changes, no divergence
    optimizers = [torch.optim.Adam(m.parameters(), lr=2e-3) for m in (eager, graphed)]
    gen = torch.Generator('cuda').manual_seed(1)
    inputs = [torch.randn(2, 3, 64, 96, device='cuda', generator=gen) for _ in range(2)]
    eager_outputs = []
    for step in range(4):
        x = inputs[step % 2]
        with warnings.catch_warnings():
            warnings.simplefilter('error')  # an eager fallback would make this comparison empty
            outs = forward_backward(graphed, [x], dtype)
        expected = forward_backward(eager, [x], dtype)
        eager_outputs.append(expected)
        for a, b in zip(outs, expected):
            assert torch.isfinite(b).all(), f'eager outputs not finite at step {step}'
            error = relative_error(a, b)
            assert error < TOLERANCE[dtype], f'step {step}: relative error {error:.3g}'
        assert_same_state(graphed, eager, TOLERANCE[dtype])
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    assert len(graphed.training_graphs._captures) == 1
    # the same input two steps apart: the updated weights moved the outputs far beyond the tolerance, so the
    # replays above did read the weights of their step
    assert relative_error(eager_outputs[2][0], eager_outputs[0][0]) > 10 * TOLERANCE[dtype]


@pytest.mark.gpu
def test_fallbacks_stay_exact():
    eager, graphed = eager_and_graphed(MLLA, SMALL_MLLA, max_signatures=2)
    gen = torch.Generator('cuda').manual_seed(2)
    x1, x2 = (torch.randn(2, 3, 64, 96, device='cuda', generator=gen) for _ in range(2))
    tol = TOLERANCE['fp32']

    for x in (x1, x2):  # gradient accumulation: two replays add up
        forward_backward(graphed, [x], 'fp32')
        forward_backward(eager, [x], 'fp32')
    assert_same_state(graphed, eager, tol)

    with pytest.warns(UserWarning, match='called again before the backward'):
        outs = forward_backward(graphed, [x1, x2], 'fp32')
    for a, b in zip(outs, forward_backward(eager, [x1, x2], 'fp32')):
        assert relative_error(a, b) < tol
    assert_same_state(graphed, eager, tol)

    x3, x4 = torch.randn(1, 3, 64, 64, device='cuda'), torch.randn(1, 3, 32, 64, device='cuda')
    forward_backward(graphed, [x3], 'fp32')  # a second signature: captured
    with pytest.warns(UserWarning, match=r'kept for 2 input signature'):
        forward_backward(graphed, [x4], 'fp32')
    for x in (x3, x4):
        forward_backward(eager, [x], 'fp32')
    assert_same_state(graphed, eager, tol)
    assert len(graphed.training_graphs._captures) == 2

    for x in (x1, x3, x1):  # the two signatures' graphs share one memory pool: alternating replays stay exact
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            outs = forward_backward(graphed, [x], 'fp32')
        for a, b in zip(outs, forward_backward(eager, [x], 'fp32')):
            assert relative_error(a, b) < tol
        assert_same_state(graphed, eager, tol)

    with torch.no_grad():
        for a, b in zip(graphed(x1), eager(x1)):
            assert relative_error(a, b) < tol
    assert_same_state(graphed, eager, tol)


@pytest.mark.gpu
def test_capture_while_gradient_accumulators_live_on_the_default_stream():
    """DistributedDataParallel creates the parameters' gradient accumulators on the default stream and keeps
    them: capturing must not make that stream wait on the capture stream (CUDA refuses it)."""
    eager, graphed = eager_and_graphed(MLLA, SMALL_MLLA)
    held = [p.view_as(p).grad_fn.next_functions[0][0] for p in graphed.parameters()]
    x = torch.randn(2, 3, 64, 96, device='cuda')
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            outs = forward_backward(graphed, [x], 'bf16')
        for a, b in zip(outs, forward_backward(eager, [x], 'bf16')):
            assert relative_error(a, b) < TOLERANCE['bf16']
        assert_same_state(graphed, eager, TOLERANCE['bf16'])
    assert len(graphed.training_graphs._captures) == 1 and len(held) == len(list(graphed.parameters()))


def test_bad_memory_cap_is_refused():
    with pytest.raises(ValueError, match='max_memory_gb'):
        MLLA(**SMALL_MLLA, cuda_graphs=1, cuda_graphs_memory_gb=0)


def cpu_graphs(max_signatures=2, max_memory_gb=1.0):
    """A small MLLA with graphs on CPU (where every call runs eagerly) and a signature of its input: the
    fallback decisions are checked directly, without CUDA."""
    model = MLLA(**SMALL_MLLA, cuda_graphs=max_signatures, cuda_graphs_memory_gb=max_memory_gb).train()
    graphs = model.training_graphs
    return model, graphs, graphs._signature(model, torch.randn(2, 3, 64, 96))


def test_eager_reasons_past_the_caps_and_before_a_pending_backward():
    model, graphs, key = cpu_graphs()
    assert graphs.eager_reason(model, key, (2, 3, 64, 96)) is None
    graphs.awaiting_backward = True
    assert graphs.eager_reason(model, key, (2, 3, 64, 96))[0] == 'pending'
    graphs.awaiting_backward = False
    graphs._captures = {'a': None, 'b': None}
    kind, message = graphs.eager_reason(model, key, (2, 3, 64, 96))
    assert kind == 'full' and 'kept for 2 input signature(s)' in message and '(2, 3, 64, 96)' in message
    graphs._captures = {key: None}
    assert graphs.eager_reason(model, key, (2, 3, 64, 96)) is None  # captured signatures replay past the caps
    graphs._captures = {'a': None}
    graphs.capture_bytes = 2 ** 30 + 1
    kind, message = graphs.eager_reason(model, key, (2, 3, 64, 96))
    assert kind == 'memory' and 'cuda_graphs_memory_gb=1.0' in message


def test_sync_batchnorm_runs_eagerly_only_with_several_processes(monkeypatch):
    model, graphs, key = cpu_graphs()
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert graphs.eager_reason(synced, key, (2, 3, 64, 96)) is None  # one process: nothing to exchange
    monkeypatch.setattr(torch.distributed, 'is_initialized', lambda: True)
    monkeypatch.setattr(torch.distributed, 'get_world_size', lambda group=None: 2)
    kind, message = graphs.eager_reason(synced, key, (2, 3, 64, 96))
    assert kind == 'syncbn' and '2 processes' in message
    assert graphs.eager_reason(MLLA(**SMALL_MLLA), key, (2, 3, 64, 96)) is None  # plain BatchNorm


def test_frozen_stages_and_replaced_parameters_change_the_signature():
    model, graphs, key = cpu_graphs()
    x = torch.randn(2, 3, 64, 96)
    assert graphs._signature(model, x) == key
    model.frozen_stages = 1
    model.train()
    frozen = graphs._signature(model, x)
    assert frozen != key
    model.norm0.weight = torch.nn.Parameter(model.norm0.weight.detach().clone(), requires_grad=False)
    assert graphs._signature(model, x) not in (key, frozen)


def test_copies_keep_the_memory_cap():
    model, graphs, _ = cpu_graphs(max_signatures=3, max_memory_gb=2.5)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert (clone.training_graphs.max_signatures, clone.training_graphs.max_memory_gb) == (3, 2.5)
        assert clone.training_graphs.capture_bytes == 0


@pytest.mark.gpu
def test_memory_cap_falls_back_with_one_warning():
    eager, graphed = eager_and_graphed(MLLA, SMALL_MLLA, max_signatures=4)
    graphed.training_graphs.max_memory_gb = 1e-6  # any capture exceeds it
    x1, x2 = torch.randn(2, 3, 64, 96, device='cuda'), torch.randn(2, 3, 64, 64, device='cuda')
    forward_backward(graphed, [x1], 'fp32')  # the first capture is always taken
    assert graphed.training_graphs.capture_bytes > 0
    with pytest.warns(UserWarning, match='past cuda_graphs_memory_gb') as record:
        for _ in range(2):
            outs = forward_backward(graphed, [x2], 'fp32')
    assert sum('cuda_graphs_memory_gb' in str(w.message) for w in record) == 1
    forward_backward(eager, [x1], 'fp32')
    for _ in range(2):
        expected = forward_backward(eager, [x2], 'fp32')
    for a, b in zip(outs, expected):
        assert relative_error(a, b) < TOLERANCE['fp32']
    assert_same_state(graphed, eager, TOLERANCE['fp32'])
    assert len(graphed.training_graphs._captures) == 1
