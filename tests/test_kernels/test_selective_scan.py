"""Triton selective scan vs the PyTorch reference: forward and every gradient, and SS2D end to end.

CPU: through the Triton interpreter (TRITON_INTERPRET=1, set by conftest) on small shapes whose sequences cross
several chunks. GPU (marker `gpu`): VMamba-T stage shapes against a float64 reference.
"""
import pytest
import torch

from mlla_dense.kernels.selective_scan import (selective_scan, selective_scan_reference, ss2d_paths,
                                               ss2d_paths_reference)
from mlla_dense.kernels.selective_scan.op import selective_scan_op

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
NAMES = ('du', 'ddelta', 'dA', 'dB', 'dC', 'dD', 'ddelta_bias')


@pytest.fixture
def triton_backend(use_backend):
    use_backend('triton')


def make_inputs(b, k, per_group, n, length, dtype, device=DEVICE, seed=0):
    """u, delta, B, C in ``dtype``; A (negative, as -exp(A_log)), D and delta_bias in float32."""
    gen = torch.Generator().manual_seed(seed)
    kd = k * per_group
    u = torch.randn(b, kd, length, generator=gen)
    delta = torch.randn(b, kd, length, generator=gen) * 0.5 - 1.0
    a = -torch.exp(torch.randn(kd, n, generator=gen) * 0.5)
    bs = torch.randn(b, k, n, length, generator=gen)
    cs = torch.randn(b, k, n, length, generator=gen)
    d = torch.randn(kd, generator=gen)
    bias = torch.randn(kd, generator=gen) * 0.3
    low = [t.to(device, dtype) for t in (u, delta)]
    return low[0], low[1], a.to(device), bs.to(device, dtype), cs.to(device, dtype), d.to(device), bias.to(device)


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def check(b, k, per_group, n, length, dtype, tol, softplus=True, seed=0, with_skip=True):
    inputs = list(make_inputs(b, k, per_group, n, length, dtype, seed=seed))
    if not with_skip:
        inputs[5:] = [None, None]
    grad = torch.randn(b, k * per_group, length, generator=torch.Generator().manual_seed(seed + 1)).to(DEVICE)
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in inputs]
    out = selective_scan(*leaves, delta_softplus=softplus)
    grads = torch.autograd.grad(out, [t for t in leaves if t is not None], grad)
    ref_leaves = [t.detach().double().requires_grad_() if t is not None else None for t in inputs]
    ref = selective_scan_reference(*ref_leaves, delta_softplus=softplus)
    ref_grads = torch.autograd.grad(ref, [t for t in ref_leaves if t is not None], grad.double())
    assert out.dtype == torch.float32 and out.shape == (b, k * per_group, length)
    assert all(g.dtype == t.dtype for g, t in zip(grads, [t for t in leaves if t is not None]))
    errors = {'out': rel_err(out, ref)}
    errors.update({name: rel_err(g, r) for name, g, r in zip(NAMES, grads, ref_grads)})
    assert all(e < tol for e in errors.values()), errors


# (B, K, channels per group, N, L): one group, VMamba's four, a group size that is not a power of two
# (one-channel programs), d_state 1 (VMamba) to 16 (Mamba), lengths that are not a multiple of the chunk.
SHAPES = [(1, 1, 4, 1, 16), (2, 4, 2, 1, 37), (1, 2, 3, 4, 50), (2, 1, 8, 16, 33)]


@pytest.mark.parametrize('shape', SHAPES)
def test_fp32_matches_reference(triton_backend, shape):
    check(*shape, torch.float32, 1e-5)


@pytest.mark.parametrize('shape', SHAPES[1:3])
def test_bf16_inputs_match_reference(triton_backend, shape):
    """bf16 u, delta, B, C (float32 state and accumulation): against float64 on the same rounded inputs."""
    check(*shape, torch.bfloat16, 1e-2)


@pytest.mark.parametrize('block_d', [2, 4])
def test_multi_channel_tiles(triton_backend, monkeypatch, block_d):
    """Programs of several channels (the default is one): the per-program dB/dC partial sums of a group add up.
    BLOCK_D must divide the group size (a program never spans two groups)."""
    from mlla_dense.kernels.selective_scan import backward, common, forward

    def tiles(per_group, length, n_state):
        return dict(common.launch_config(per_group, length, n_state), BLOCK_D=block_d)

    for module in (forward, backward):
        monkeypatch.setattr(module, 'launch_config', tiles)
    check(2, 2, 4, 2, 37, torch.float32, 1e-5)
    check_paths(1, 4, 1, 21, torch.float32, 1e-5)


def test_without_softplus_and_skip(triton_backend):
    check(2, 2, 2, 2, 40, torch.float32, 1e-5, softplus=False, with_skip=False)


def test_strided_inputs(triton_backend):
    """B and C as slices of one projection (as SS2D makes them): unit stride only along the sequence."""
    u, delta, a, bs, cs, d, bias = make_inputs(2, 4, 2, 2, 30, torch.float32)
    packed = torch.cat([bs, cs], dim=2)
    b_view, c_view = packed[:, :, :2], packed[:, :, 2:]
    assert not b_view.is_contiguous()
    out = selective_scan(u, delta, a, b_view, c_view, d, bias)
    torch.testing.assert_close(out, selective_scan_reference(u, delta, a, bs, cs, d, bias), rtol=1e-5, atol=1e-5)


def test_extreme_steps_stay_finite(triton_backend):
    """Large positive delta (softplus in its linear range, states decay to ~0) and very negative delta."""
    u, delta, a, bs, cs, d, bias = make_inputs(1, 2, 2, 2, 40, torch.float32)
    delta = delta.clone()
    delta[..., :20] = 40.0
    delta[..., 20:] = -40.0
    out = selective_scan(u, delta, a, bs, cs, d, bias)
    ref = selective_scan_reference(u, delta, a, bs, cs, d, bias)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_shape_errors_are_clear(triton_backend):
    u, delta, a, bs, cs, d, bias = make_inputs(1, 2, 2, 1, 8, torch.float32)
    with pytest.raises(ValueError, match='shapes do not fit'):
        selective_scan(u, delta, a[:3], bs, cs, d, bias)


def check_paths(b, d, n, length, dtype, tol, seed=0):
    """The four SS2D paths (two shared sequences, two of them walked backwards) against the float64 reference."""
    _, delta, a, bs, cs, skip, bias = make_inputs(b, 4, d, n, length, dtype, seed=seed)
    xs = torch.randn(b, 2, d, length, generator=torch.Generator().manual_seed(seed + 2)).to(DEVICE, dtype)
    inputs = [xs, delta, a, bs, cs, skip, bias]
    grad = torch.randn(b, 4 * d, length, generator=torch.Generator().manual_seed(seed + 1)).to(DEVICE)
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = ss2d_paths(*leaves)
    grads = torch.autograd.grad(out, leaves, grad)
    ref_leaves = [t.detach().double().requires_grad_() for t in inputs]
    ref = ss2d_paths_reference(*ref_leaves)
    ref_grads = torch.autograd.grad(ref, ref_leaves, grad.double())
    assert all(g.dtype == t.dtype and g.shape == t.shape for g, t in zip(grads, leaves))
    errors = {'out': rel_err(out, ref)}
    errors.update({name: rel_err(g, r) for name, g, r in zip(('dxs', *NAMES[1:]), grads, ref_grads)})
    assert all(e < tol for e in errors.values()), errors


@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_ss2d_paths_match_reference(triton_backend, dtype, tol):
    """Reversed paths by index arithmetic and the gradient of the two sequences summed over their paths."""
    check_paths(2, 3, 2, 37, dtype, tol)


def test_ss2d_paths_shape_errors_are_clear(triton_backend):
    _, delta, a, bs, cs, skip, bias = make_inputs(1, 4, 2, 1, 8, torch.float32)
    with pytest.raises(ValueError, match='SS2D paths need'):
        ss2d_paths(torch.randn(1, 4, 2, 8), delta, a, bs, cs, skip, bias)


def test_output_gradient_per_sequence(triton_backend):
    """SS2D's four paths on two sequences: the backward given one output gradient per sequence (B, 2, D, L) equals
    it given the gradient expanded to every path (B, 4D, L); a gradient of another shape is refused."""
    b, d, length = 2, 3, 21
    _, delta, a, bs, cs, skip, bias = make_inputs(b, 4, d, 1, length, torch.float32)
    xs = torch.randn(b, 2, d, length, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    per_sequence = torch.randn(b, 2, d, length, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    _, states = selective_scan_op.forward(xs, delta, a, bs, cs, skip, bias, True, 2)
    expanded = per_sequence.unsqueeze(1).expand(b, 2, 2, d, length).reshape(b, 4 * d, length)
    grads = selective_scan_op.backward(per_sequence, xs, delta, a, bs, cs, skip, bias, states, True, 2)
    grads_expanded = selective_scan_op.backward(expanded, xs, delta, a, bs, cs, skip, bias, states, True, 2)
    assert all(torch.equal(g, e) for g, e in zip(grads, grads_expanded))
    with pytest.raises(ValueError, match='output gradient must be'):
        selective_scan_op.backward(per_sequence[:, :, :2], xs, delta, a, bs, cs, skip, bias, states, True, 2)


def test_custom_op_registration(triton_backend):
    """torch.library.opcheck: schema, fake (meta) implementation against the real one, autograd registration."""
    xs, delta, a, bs, cs, skip, bias = make_inputs(1, 4, 2, 2, 20, torch.float32)
    xs = xs.view(1, 4, 2, 20)[:, :2]
    args = [t.requires_grad_() for t in (xs.clone(), delta, a, bs, cs, skip, bias)]
    results = torch.library.opcheck(selective_scan_op.forward_op, (*args, True, 2))
    assert set(results.values()) == {'SUCCESS'}, results


# VMamba-T (d_state 1, 4 paths): 64x64 tokens (16 chunks; the float64 reference loops over every position) and
# stage 3 of 800x1344; Mamba-like d_state 16.
GPU_SHAPES = [(2, 4, 96, 1, 64 * 64), (2, 4, 384, 1, 50 * 84), (2, 1, 64, 16, 4096)]


@pytest.mark.gpu
@pytest.mark.parametrize('shape', GPU_SHAPES)
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-4), (torch.bfloat16, 1e-2)])
def test_gpu_matches_fp64_reference(shape, dtype, tol):
    check(*shape, dtype, tol)


@pytest.mark.gpu
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-4), (torch.bfloat16, 1e-2)])
def test_gpu_ss2d_paths_match_fp64_reference(dtype, tol):
    """VMamba-T stage 3 of 800x1344 (D 384, 50x84 tokens) through the shared, partly reversed sequences."""
    check_paths(2, 384, 1, 50 * 84, dtype, tol)
