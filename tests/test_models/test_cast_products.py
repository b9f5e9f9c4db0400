"""Products on weights cast once per forward (models/layers/cast_products.py), as MLLA's blocks run them under
torch.compile with autocast: autocast's values, the weights' gradients in float32 straight from the products,
and a compiled MLLA that casts its blocks' weights in one foreach copy instead of per product."""
import pytest
import torch
import torch.nn.functional as F

from mlla_dense.models.backbones.mlla import MLLA
from mlla_dense.models.layers.cast_products import cast_all, cast_product


def _pieces(with_bias: bool):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 8, generator=gen).to(torch.bfloat16).requires_grad_()
    weights = [torch.randn(5, 8, generator=gen).requires_grad_(), torch.randn(3, 8, generator=gen).requires_grad_()]
    biases = [torch.randn(5, generator=gen).requires_grad_(), torch.randn(3, generator=gen).requires_grad_()]
    return x, weights, biases if with_bias else [None, None]


def test_cast_all_casts_without_gradient():
    tensors = [torch.randn(4, 3, requires_grad=True), torch.randn(7).t(), torch.randn(2, 5).t()]
    casts = cast_all(tensors, torch.bfloat16)
    for t, c in zip(tensors, casts):
        assert c.dtype == torch.bfloat16 and not c.requires_grad
        assert torch.equal(c, t.detach().to(torch.bfloat16))


@pytest.mark.parametrize('with_bias', [True, False])
def test_cast_product_is_autocasts_product_with_float32_weight_gradients(with_bias):
    """Output and input gradient equal autocast's F.linear on the stacked pieces (the same bfloat16 operands);
    each piece's weight and bias gradient is float32 and at least as close to the float64 truth as autocast's
    (which rounds it to bfloat16 first)."""
    x, weights, biases = _pieces(with_bias)
    grad = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    leaves = [x, *weights, *(b for b in biases if b is not None)]
    weight_cast, = cast_all([torch.cat(weights)], torch.bfloat16)
    bias_cast = cast_all([torch.cat(biases)], torch.bfloat16)[0] if with_bias else None
    out = cast_product(x, weights, biases, weight_cast, bias_cast)
    ours = torch.autograd.grad(out, leaves, grad)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        expected = F.linear(x, torch.cat(weights), torch.cat(biases) if with_bias else None)
    theirs = torch.autograd.grad(expected, leaves, grad)
    assert out.dtype == torch.bfloat16 and torch.equal(out, expected)
    assert torch.equal(ours[0], theirs[0])
    x64 = x.detach().double()
    truth = list((grad.double().reshape(-1, 8).t() @ x64.reshape(-1, 8)).split([5, 3]))
    if with_bias:
        truth += list(grad.double().reshape(-1, 8).sum(0).split([5, 3]))
    for mine, autocast, true in zip(ours[1:], theirs[1:], truth):
        assert mine.dtype == torch.float32
        assert (mine.double() - true).norm() <= (autocast.double() - true).norm() + 1e-12
        torch.testing.assert_close(mine, autocast, rtol=1e-2, atol=1e-2)


def test_cast_product_without_gradients_is_the_plain_product():
    x, weights, biases = _pieces(True)
    weight_cast, bias_cast = cast_all([torch.cat(weights), torch.cat(biases)], torch.bfloat16)
    with torch.no_grad():
        out = cast_product(x, weights, biases, weight_cast, bias_cast)
    assert torch.equal(out, F.linear(x.detach(), weight_cast, bias_cast))


def _compiled_graphs(model, image):
    """The forward and backward graphs AOT autograd makes of ``model``'s loss under bfloat16 autocast."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd
    graphs = []

    def keep(gm, example_inputs):
        graphs.append(gm)
        return make_boxed_func(gm.forward)

    compiled = torch.compile(model, backend=aot_autograd(fw_compiler=keep, bw_compiler=keep))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = compiled(image)
    grads = torch.autograd.grad(sum(o.float().square().mean() for o in outs), list(model.parameters()))
    return graphs, grads


def _bfloat16_casts(graph) -> int:
    return sum(1 for n in graph.graph.nodes if n.op == 'call_function' and str(n.target) == 'aten._to_copy.default'
               and n.kwargs.get('dtype') == torch.bfloat16)


def test_compiled_mlla_casts_its_block_weights_once(use_backend, monkeypatch):
    """Compiled op by op under autocast (the reference path: the casts are the same with the kernels), MLLA casts
    every block's product weights in one foreach copy: the forward graph has ten bfloat16 casts per block fewer
    than with autocast casting each product's weight and bias (the gate's two concatenated), the backward graph
    at least five fewer (the recomputed branches cast their weights again), and the gradients are autocast's
    eager ones to bfloat16 accuracy."""
    use_backend('torch')
    torch.manual_seed(0)
    model = MLLA(arch='nano', drop_path_rate=0.0).train()
    image = torch.randn(1, 3, 40, 56)
    torch._dynamo.reset()
    (forward, backward), grads = _compiled_graphs(model, image)
    torch._dynamo.reset()
    with monkeypatch.context() as patch:
        patch.setattr(MLLA, '_product_casts', lambda self, x: None)
        (forward_autocast, backward_autocast), _ = _compiled_graphs(model, image)
    torch._dynamo.reset()
    blocks = sum(len(layer.blocks) for layer in model.layers)
    ops = [str(n.target) for n in forward.graph.nodes if n.op == 'call_function']
    assert ops.count('aten._foreach_copy.default') == 1
    assert _bfloat16_casts(forward_autocast) - _bfloat16_casts(forward) == 10 * blocks
    assert _bfloat16_casts(backward_autocast) - _bfloat16_casts(backward) >= 5 * blocks
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(image)
    eager = torch.autograd.grad(sum(o.float().square().mean() for o in outs), list(model.parameters()))
    for (name, _), a, b in zip(model.named_parameters(), eager, grads):
        assert b.dtype == a.dtype
        torch.testing.assert_close(b, a, rtol=0.05, atol=0.05 * float(a.abs().max()) + 1e-6, msg=name)


@pytest.mark.gpu
def test_gpu_compiled_bfloat16_gradients_as_accurate_as_eager():
    """On the GPU, MLLA compiled (Inductor, op by op, the weights cast once) in bfloat16 training: every gradient
    as close to a float64 truth as the eager model's (within 1.5x; MLLA-nano, 2x3x64x96, no drop path)."""
    import copy
    from mlla_dense.kernels.backend import forced_backend
    torch.manual_seed(0)
    model = MLLA(arch='nano', drop_path_rate=0.0).cuda().train()
    model64 = copy.deepcopy(model).double()
    image = torch.randn(2, 3, 64, 96, device='cuda')

    def grads(runner, params, x, autocast=True):
        with torch.autocast('cuda', dtype=torch.bfloat16, enabled=autocast):
            outs = runner(x)
        return [g.double() for g in torch.autograd.grad(sum(o.float().square().mean() for o in outs), params)]

    torch._dynamo.reset()
    params = list(model.parameters())
    compiled = grads(torch.compile(model), params, image)
    eager = grads(model, params, image)
    with forced_backend('torch'):
        truth = grads(model64, list(model64.parameters()), image.double(), autocast=False)
    floor = 1e-3 * max(float(t.norm()) for t in truth)
    for (name, _), t, c, e in zip(model.named_parameters(), truth, compiled, eager):
        error_compiled = float((c - t).norm()) / max(float(t.norm()), floor)
        error_eager = float((e - t).norm()) / max(float(t.norm()), floor)
        assert error_compiled <= 1.5 * error_eager + 1e-3, (name, error_compiled, error_eager)
    torch._dynamo.reset()
