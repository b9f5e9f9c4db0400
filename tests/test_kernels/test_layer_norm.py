"""Triton LayerNorm of token channels vs its PyTorch reference: forward and every gradient.

CPU: through the Triton interpreter (TRITON_INTERPRET=1, set by conftest) on small odd shapes.
GPU (marker `gpu`): the MLLA-T block shapes of a 2x3x800x1344 input.
"""
import pytest
import torch
from helpers import assert_one_graph_matching_eager

from mlla_dense.kernels.layer_norm import layer_norm, layer_norm_reference
from mlla_dense.kernels.kernel_op import clear_plans
from mlla_dense.kernels.layer_norm.op import layer_norm_backward, layer_norm_op

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'


@pytest.fixture
def triton_backend(use_backend):
    use_backend('triton')


def make_inputs(b, n, c, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(b, n, c, generator=gen) * 3 + 1).to(DEVICE, dtype)
    weight = (1 + 0.5 * torch.randn(c, generator=gen)).to(DEVICE)
    bias = torch.randn(c, generator=gen).to(DEVICE)
    grad = torch.randn(b, n, c, generator=gen).to(DEVICE)
    return x, weight, bias, grad


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def check(b, n, c, dtype, out_dtype, tol):
    x, weight, bias, grad = make_inputs(b, n, c, dtype)
    leaves = [t.detach().clone().requires_grad_() for t in (x, weight, bias)]
    out = layer_norm(leaves[0], leaves[1], leaves[2], 1e-5, out_dtype)
    grads = torch.autograd.grad(out, leaves, grad.to(out_dtype))
    ref_leaves = [t.detach().double().requires_grad_() for t in (x, weight, bias)]
    ref = layer_norm_reference(*ref_leaves, 1e-5)
    ref_grads = torch.autograd.grad(ref, ref_leaves, grad.to(out_dtype).double())
    assert out.dtype == out_dtype and out.shape == x.shape
    assert [g.dtype for g in grads] == [dtype, torch.float32, torch.float32]
    errors = {'out': rel_err(out, ref)}
    errors.update({name: rel_err(g, r) for name, g, r in zip(('dx', 'dweight', 'dbias'), grads, ref_grads)})
    assert all(e < tol for e in errors.values()), errors


# channel counts below, at and above a power of two; a token count that is not a multiple of the tile
CPU_SHAPES = [(2, 37, 64), (1, 50, 24), (3, 7, 96), (1, 5, 128)]
DTYPES = [(torch.float32, torch.float32, 1e-5), (torch.bfloat16, torch.bfloat16, 1e-2),
          (torch.bfloat16, torch.float32, 1e-2), (torch.float32, torch.bfloat16, 1e-2)]


@pytest.mark.parametrize('shape', CPU_SHAPES)
@pytest.mark.parametrize('dtype,out_dtype,tol', DTYPES, ids=['fp32', 'bf16', 'bf16-to-fp32', 'fp32-to-bf16'])
def test_matches_reference(triton_backend, shape, dtype, out_dtype, tol):
    check(*shape, dtype, out_dtype, tol)


def official_autocast_norm(x, weight, bias):
    """What autocast does in the official blocks: float32 LayerNorm, then the next Linear's cast."""
    return torch.nn.functional.layer_norm(x.float(), (x.shape[-1],), weight, bias, 1e-5).to(torch.bfloat16)


def test_output_close_to_float32_layer_norm_then_cast(triton_backend):
    """Within one bfloat16 step (the interpreter truncates float32 to bfloat16; GPUs round to nearest, which
    the gpu test below checks)."""
    x, weight, bias, _ = make_inputs(2, 41, 64, torch.bfloat16)
    ours = layer_norm(x, weight, bias, 1e-5, torch.bfloat16)
    torch.testing.assert_close(ours, official_autocast_norm(x, weight, bias), rtol=8e-3, atol=8e-3)


def test_chunked_backward_many_programs(triton_backend, monkeypatch):
    """Many token tiles per backward program (a small tile), each chunk ending mid-tensor, and the last program
    adding up the chunks' partials in several steps (a small finishing tile)."""
    from mlla_dense.kernels.layer_norm import op
    monkeypatch.setitem(op.TUNING, 'backward_tile', 128)
    monkeypatch.setitem(op.TUNING, 'backward_min_rows', 1)
    monkeypatch.setitem(op.TUNING, 'finish_tile', 32)
    clear_plans()
    check(1, 300, 32, torch.float32, torch.float32, 1e-5)
    clear_plans()


def test_strided_input_and_deterministic(triton_backend):
    x, weight, bias, grad = make_inputs(2, 9, 48, torch.float32)
    big = torch.randn(2, 9, 80, device=DEVICE)
    view = big[..., 16:64]
    view.copy_(x)
    assert rel_err(layer_norm(view, weight, bias), layer_norm_reference(x, weight, bias)) < 1e-5
    runs = []
    for _ in range(2):
        leaves = [t.detach().clone().requires_grad_() for t in (x, weight, bias)]
        out = layer_norm(*leaves)
        runs.append((out, *torch.autograd.grad(out, leaves, grad)))
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_bad_inputs_raise(triton_backend):
    x, weight, bias, _ = make_inputs(1, 4, 32, torch.float32)
    with pytest.raises(ValueError, match=r'shape \(32,\)'):
        layer_norm(x, weight[:16], bias)
    with pytest.raises(ValueError, match='channel dim'):
        layer_norm(x[0, 0], weight, bias)


def test_torch_compile_without_graph_breaks(triton_backend):
    """Under torch.compile the kernels are custom ops: one graph, same output and gradients as eager."""
    cuda = DEVICE == 'cuda'
    x, weight, bias, _ = make_inputs(2, 13, 32, torch.bfloat16 if cuda else torch.float32)

    def fn(x, weight, bias):
        return layer_norm(x, weight, bias, 1e-5, torch.bfloat16).float().square().sum()

    assert_one_graph_matching_eager(fn, (x, weight, bias), 'inductor' if cuda else 'aot_eager')


def test_custom_op_registration(triton_backend):
    """torch.library.opcheck: schema, fake implementation against the real one, autograd registration."""
    x, weight, bias, _ = make_inputs(1, 6, 16, torch.float32)
    args = [t.requires_grad_() for t in (x, weight, bias)]
    results = torch.library.opcheck(layer_norm_op.forward_op, (*args, 1e-5, torch.float32))
    assert set(results.values()) == {'SUCCESS'}, results
    _, stats = layer_norm_op.forward_op(x, weight, bias, 1e-5, torch.float32)
    grads = layer_norm_op.backward_op(torch.randn_like(x), x, weight, stats)
    assert all(g.is_contiguous() for g in grads)


def test_backward_adds_residual_gradient(triton_backend):
    """With ``dres`` the input gradient also carries the gradient that reaches x by another path."""
    x, weight, bias, grad = make_inputs(2, 19, 48, torch.float32)
    dres = torch.randn_like(x)
    _, stats = layer_norm_op.forward_op(x, weight, bias, 1e-5, torch.float32)
    plain = layer_norm_backward(grad, x, weight, stats)
    fused = layer_norm_backward(grad, x, weight, stats, dres)
    assert rel_err(fused[0], plain[0] + dres) < 1e-6
    assert all(torch.equal(a, b) for a, b in zip(fused[1:], plain[1:]))


# MLLA-T's blocks for a 2x3x800x1344 input (tokens per image, channels)
GPU_SHAPES = [(2, 67200, 64), (2, 16800, 128), (2, 4200, 256), (2, 1050, 512)]


@pytest.mark.gpu
@pytest.mark.parametrize('shape', GPU_SHAPES)
@pytest.mark.parametrize('dtype,out_dtype,tol', DTYPES[:3], ids=['fp32', 'bf16', 'bf16-to-fp32'])
def test_gpu_matches_fp64_reference(shape, dtype, out_dtype, tol):
    """Real shapes: fp32 within 1e-5 and bf16 within 1e-2 relative L2 of float64."""
    check(*shape, dtype, out_dtype, tol)


@pytest.mark.gpu
def test_gpu_bf16_output_equals_float32_layer_norm_then_cast():
    """Rounded to nearest like the cast: equal except where the two float32 values straddle a rounding boundary."""
    x, weight, bias, _ = make_inputs(2, 67200, 64, torch.bfloat16)
    ours = layer_norm(x, weight, bias, 1e-5, torch.bfloat16)
    official = official_autocast_norm(x, weight, bias)
    assert (ours != official).float().mean() < 1e-3
    torch.testing.assert_close(ours, official, rtol=8e-3, atol=8e-3)
