"""Triton selective scan vs the PyTorch reference: forward and every gradient, and SS2D end to end.

CPU: through the Triton interpreter (TRITON_INTERPRET=1, set by conftest) on small shapes whose sequences cross
several chunks. GPU (marker `gpu`): VMamba-T stage shapes against a float64 reference.
"""
import pytest
import torch

from mlla_dense.kernels.selective_scan import selective_scan, selective_scan_reference, ss2d_scan

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
NAMES = ('du', 'ddelta', 'dA', 'dB', 'dC', 'dD', 'ddelta_bias')


@pytest.fixture
def triton_backend(monkeypatch):
    monkeypatch.setenv('MLLA_DENSE_BACKEND', 'triton')


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


def test_ss2d_triton_matches_reference(monkeypatch):
    """The whole SS2D core (cross-scan, projections, scan, cross-merge) with either backend."""
    gen = torch.Generator().manual_seed(3)
    b, d, h, w, n, rank = 1, 8, 5, 7, 1, 2
    x = torch.randn(b, d, h, w, generator=gen)
    params = [torch.randn(4, rank + 2 * n, d, generator=gen) * 0.3, torch.randn(4, d, rank, generator=gen) * 0.3,
              torch.randn(4, d, generator=gen) * 0.1, torch.randn(4 * d, n, generator=gen) * 0.3,
              torch.randn(4 * d, generator=gen)]
    outs, grads = [], []
    for name in ('torch', 'triton'):
        monkeypatch.setenv('MLLA_DENSE_BACKEND', name)
        leaves = [t.clone().requires_grad_() for t in [x, *params]]
        out = ss2d_scan(*leaves)
        outs.append(out)
        grads.append(torch.autograd.grad(out.square().sum(), leaves))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


# VMamba-T (d_state 1, 4 paths) stage 1 of a 512x512 input and stage 3 of 800x1344; Mamba-like d_state 16.
GPU_SHAPES = [(2, 4, 96, 1, 128 * 128), (2, 4, 384, 1, 50 * 84), (2, 1, 64, 16, 4096)]


@pytest.mark.gpu
@pytest.mark.parametrize('shape', GPU_SHAPES)
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-4), (torch.bfloat16, 1e-2)])
def test_gpu_matches_fp64_reference(shape, dtype, tol):
    check(*shape, dtype, tol)
