"""Triton depthwise convolution of tokens vs its PyTorch reference: forward and every gradient.

CPU: through the Triton interpreter (TRITON_INTERPRET=1, set by conftest) on small odd shapes.
GPU (marker `gpu`): MLLA-T's stage shapes of a 2x3x800x1344 input.
"""
import pytest
import torch
from helpers import assert_one_graph_matching_eager

from mlla_dense.kernels.depthwise_conv import depthwise_conv, depthwise_conv_reference
from mlla_dense.kernels.depthwise_conv import op as depthwise_conv_module
from mlla_dense.kernels.depthwise_conv.op import depthwise_conv_op

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
VARIANTS = [dict(residual=True), dict(activation='silu'), dict()]


@pytest.fixture
def triton_backend(use_backend):
    use_backend('triton')


def make_inputs(b, h, w, c, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, h * w, c, generator=gen).to(DEVICE, dtype)
    weight = (torch.randn(c, 1, 3, 3, generator=gen) * 0.3).to(DEVICE)
    bias = torch.randn(c, generator=gen).to(DEVICE)
    grad = torch.randn(b, h * w, c, generator=gen).to(DEVICE, dtype)
    return x, weight, bias, grad


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def check(b, h, w, c, dtype, tol, options):
    x, weight, bias, grad = make_inputs(b, h, w, c, dtype)
    leaves = [t.detach().clone().requires_grad_() for t in (x, weight, bias)]
    out = depthwise_conv(leaves[0], (h, w), leaves[1], leaves[2], **options)
    grads = torch.autograd.grad(out, leaves, grad)
    ref_leaves = [t.detach().double().requires_grad_() for t in (x, weight, bias)]
    ref = depthwise_conv_reference(ref_leaves[0], (h, w), *ref_leaves[1:], **options)
    ref_grads = torch.autograd.grad(ref, ref_leaves, grad.double())
    assert out.dtype == dtype and out.shape == x.shape
    errors = {'out': rel_err(out, ref)}
    errors.update({name: rel_err(g, r) for name, g, r in zip(('dx', 'dweight', 'dbias'), grads, ref_grads)})
    assert all(e < tol for e in errors.values()), errors


# odd grids, a channel count that is not a multiple of the channel block, a single row and a single column, more
# program rows (batch x chunks) than one step of the last program's sum of the weight-gradient partials, a grid
# wider than the tap-sum kernel's tile of 16 columns
CPU_SHAPES = [(2, 5, 7, 32), (1, 9, 6, 48), (1, 1, 13, 16), (2, 11, 1, 64), (1, 6, 6, 96), (9, 3, 4, 16),
              (1, 5, 21, 16)]


@pytest.mark.parametrize('shape', CPU_SHAPES)
@pytest.mark.parametrize('options', VARIANTS, ids=['residual', 'silu', 'plain'])
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_matches_reference(triton_backend, shape, options, dtype, tol):
    check(*shape, dtype, tol, options)


@pytest.mark.parametrize('tiles', [dict(block_n=16, tile_w=0), dict(block_n=16, tile_w=4),
                                   dict(block_n=64, tile_w=16)], ids=['row-major', '4x4', '4x16'])
@pytest.mark.parametrize('options', VARIANTS, ids=['residual', 'silu', 'plain'])
def test_grid_tiles_match_reference(triton_backend, monkeypatch, tiles, options):
    """The tap-sum kernel (forward, input gradient) on other tiles than the default (TUNING's block_n, tile_w):
    consecutive tokens in row-major order, and tiles of grid rows x columns, partly empty where a grid has one row
    or one column or sides that are not multiples of the tile."""
    for name, value in tiles.items():
        monkeypatch.setitem(depthwise_conv_module.TUNING, name, value)
    for plans in (depthwise_conv_module._forward_plans, depthwise_conv_module._backward_plans):
        monkeypatch.setattr(plans, 'cache', {})
    for shape in ((2, 5, 7, 32), (1, 1, 13, 16), (2, 11, 1, 64), (1, 9, 6, 48)):
        check(*shape, torch.float32, 1e-5, options)


def test_tiles_of_partial_grid_rows_refused(triton_backend, monkeypatch):
    monkeypatch.setitem(depthwise_conv_module.TUNING, 'tile_w', 12)
    monkeypatch.setattr(depthwise_conv_module._forward_plans, 'cache', {})
    x, weight, bias, _ = make_inputs(1, 4, 5, 32, torch.float32)
    with pytest.raises(ValueError, match='whole grid rows'):
        depthwise_conv(x, (4, 5), weight, bias, residual=True)


def test_no_bias_and_strided_input(triton_backend):
    """bias=None is a zero bias; a token view with a non-contiguous batch/token stride is read in place."""
    x, weight, _, _ = make_inputs(2, 4, 5, 32, torch.float32)
    big = torch.randn(2, 20, 80, device=DEVICE)
    view = big[:, :, 8:40]
    view.copy_(x)
    out = depthwise_conv(view, (4, 5), weight, None, activation='silu')
    ref = depthwise_conv_reference(x, (4, 5), weight, None, activation='silu')
    assert rel_err(out, ref) < 1e-5


def test_deterministic(triton_backend):
    x, weight, bias, grad = make_inputs(1, 9, 10, 32, torch.float32)
    runs = []
    for _ in range(2):
        leaves = [t.detach().clone().requires_grad_() for t in (x, weight, bias)]
        out = depthwise_conv(leaves[0], (9, 10), leaves[1], leaves[2], activation='silu')
        runs.append((out, *torch.autograd.grad(out, leaves, grad)))
    assert all(torch.equal(a, b) for a, b in zip(*runs))


@pytest.mark.parametrize('options', VARIANTS, ids=['residual', 'silu', 'plain'])
def test_backward_into_a_view_of_a_wider_buffer(triton_backend, options):
    """The input gradient written into channels 8..8+C of a wider buffer equals the one written into a tensor of
    its own (the same kernels, so bit for bit), and the buffer's other channels stay as they were (C=48: a
    channel block that ends past C)."""
    x, weight, bias, grad = make_inputs(2, 5, 7, 48, torch.float32)
    residual, silu = options.get('residual', False), options.get('activation') == 'silu'
    dx, *param_grads = depthwise_conv_op.backward(grad, x, weight, bias, 5, 7, residual, silu)
    wide = torch.full((2, 35, 64), 7., device=DEVICE)
    param_grads_into = depthwise_conv_op.backward_into(wide[..., 8:56], grad, x, weight, bias, 5, 7, residual, silu)
    assert torch.equal(wide[..., 8:56], dx)
    assert torch.equal(wide[..., :8], torch.full_like(wide[..., :8], 7.))
    assert torch.equal(wide[..., 56:], torch.full_like(wide[..., 56:], 7.))
    assert all(torch.equal(a, b) for a, b in zip(param_grads_into, param_grads))


def test_bad_inputs_raise(triton_backend):
    x, weight, bias, _ = make_inputs(1, 4, 4, 32, torch.float32)
    with pytest.raises(ValueError, match='4x5 grid'):
        depthwise_conv(x, (4, 5), weight, bias)
    with pytest.raises(ValueError, match='3x3 depthwise'):
        depthwise_conv(x, (4, 4), weight[:16], bias)
    with pytest.raises(ValueError, match='activation'):
        depthwise_conv(x, (4, 4), weight, bias, activation='gelu')


def test_torch_compile_without_graph_breaks(triton_backend):
    """Under torch.compile the kernels are custom ops: one graph, same output and gradients as eager (inductor
    on the GPU, aot_eager on CPU, which runs dynamo and AOT autograd on the fake implementations)."""
    cuda = DEVICE == 'cuda'
    x, weight, bias, _ = make_inputs(2, 6, 7, 32, torch.bfloat16 if cuda else torch.float32)

    def fn(x, weight, bias):
        y = depthwise_conv(x, (6, 7), weight, bias, residual=True)
        return depthwise_conv(y, (6, 7), weight, bias, activation='silu').float().square().sum()

    assert_one_graph_matching_eager(fn, (x, weight, bias), 'inductor' if cuda else 'aot_eager')


def test_custom_op_registration(triton_backend):
    """torch.library.opcheck: schema, fake implementation against the real one, autograd registration."""
    x, weight, bias, _ = make_inputs(1, 3, 5, 16, torch.float32)
    args = [t.requires_grad_() for t in (x, weight, bias)]
    for residual, silu in ((True, False), (False, True)):
        results = torch.library.opcheck(depthwise_conv_op.forward_op, (*args, 3, 5, residual, silu))
        assert set(results.values()) == {'SUCCESS'}, results
        # inductor checks the real outputs' strides against the fake ones (contiguous)
        grads = depthwise_conv_op.backward_op(torch.randn_like(x), x, weight, bias, 3, 5, residual, silu)
        assert all(g.is_contiguous() for g in grads)


# MLLA-T's stages for a 2x3x800x1344 input (tokens, channels)
GPU_SHAPES = [(2, 200, 336, 64), (2, 100, 168, 128), (2, 50, 84, 256), (2, 25, 42, 512)]


@pytest.mark.gpu
@pytest.mark.parametrize('shape', GPU_SHAPES)
@pytest.mark.parametrize('options', VARIANTS[:2], ids=['residual', 'silu'])
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_gpu_matches_fp64_reference(shape, options, dtype, tol):
    """Real shapes: fp32 within 1e-5 and bf16 within 1e-2 relative L2 of float64."""
    check(*shape, dtype, tol, options)
