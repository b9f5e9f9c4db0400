"""The block's gate x * SiLU(a): values and gradients equal to the plain ops, fewer saved tensors."""
import pytest
import torch
import torch.nn.functional as F

from mlla_dense.models.layers.silu_gate import silu_gate


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_equals_plain_ops(dtype):
    torch.manual_seed(0)
    x = torch.randn(2, 37, 24, dtype=dtype, requires_grad=True)
    a = (3 * torch.randn(2, 37, 24)).to(dtype).requires_grad_()
    grad = torch.randn(2, 37, 24, dtype=dtype)
    ours = silu_gate(x, a)
    d_ours = torch.autograd.grad(ours, (x, a), grad)
    plain = x * F.silu(a)
    d_plain = torch.autograd.grad(plain, (x, a), grad)
    assert torch.equal(ours, plain)
    for g_ours, g_plain in zip(d_ours, d_plain):
        assert torch.equal(g_ours, g_plain)


def test_stores_two_tensors_instead_of_three():
    x, a = torch.randn(3, 8, requires_grad=True), torch.randn(3, 8, requires_grad=True)
    for fn, expected in ((silu_gate, 2), (lambda x, a: x * F.silu(a), 3)):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            fn(x, a)
        assert len({t.data_ptr() for t in saved}) == expected


def test_only_needed_gradients():
    x, a = torch.randn(4, requires_grad=True), torch.randn(4)
    silu_gate(x, a).sum().backward()
    assert x.grad is not None and a.grad is None


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match='equal shapes'):
        silu_gate(torch.randn(2, 3), torch.randn(3))
