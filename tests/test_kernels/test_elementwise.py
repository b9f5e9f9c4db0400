"""The elementwise kernels of the fused MLLA block (kernels/elementwise) and the float32 activations they and the
depthwise conv use (kernels/activations.py), against their PyTorch references.

CPU: through the Triton interpreter on small odd shapes, strided inputs included. GPU (marker `gpu`): MLLA-T
stage-1 shapes, and the activations' float32 error against float64 next to PyTorch's own.
"""
import pytest
import torch
import triton
import triton.language as tl

from mlla_dense.kernels import activations
from mlla_dense.kernels.elementwise import (cast_each, column_sums, drop_path_grad, finish_column_sums, gelu,
                                            gelu_with_grad, pack, residual_add, silu_gate, silu_gate_backward,
                                            traced_column_sums)
from mlla_dense.kernels.elementwise.block_matrix import BlockMatrix
from mlla_dense.kernels.elementwise.reference import (drop_path_grad_reference, gelu_reference, pack_reference,
                                                      residual_add_reference, silu_gate_backward_reference,
                                                      silu_gate_reference)
from mlla_dense.kernels.partial_sums import live_counters

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
# float32 exactly up to the order of operations; bfloat16 within a rounding step of the largest intermediate
# (values up to ~10 here): the interpreter truncates where GPUs round to nearest
TOLERANCES = {torch.float32: dict(rtol=1e-5, atol=1e-5),
              torch.bfloat16: dict(rtol=1.6e-2, atol=0.1 if DEVICE == 'cpu' else 1.6e-2)}


@pytest.fixture(autouse=True)
def triton_backend(use_backend):
    use_backend('triton')


def tokens(b, n, c, dtype, seed, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(b, n, c, generator=gen) * scale).to(DEVICE, dtype)


def halves(b, n, c, dtype, seed):
    """The two (B, N, C) halves of one (B, N, 2C) tensor: strided views, as the block's gate and input are."""
    both = tokens(b, n, 2 * c, dtype, seed)
    return both[..., :c], both[..., c:]


SHAPES = [(2, 37, 32), (1, 50, 24), (3, 7, 96)]
DTYPES = [torch.float32, torch.bfloat16]


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('dtype', DTYPES, ids=['fp32', 'bf16'])
def test_silu_gate_and_backward(shape, dtype):
    gate, x = halves(*shape, dtype, 0)
    dy = tokens(*shape, dtype, 1)
    torch.testing.assert_close(silu_gate(x, gate), silu_gate_reference(x, gate), **TOLERANCES[dtype])
    dx = torch.empty_like(dy)
    dgi = torch.zeros(*shape[:2], 2 * shape[2], dtype=dtype, device=DEVICE)
    silu_gate_backward(dy, x, gate, dx, dgi[..., :shape[2]])
    ref_dx, ref_dg = silu_gate_backward_reference(dy, x, gate)
    torch.testing.assert_close(dx, ref_dx, **TOLERANCES[dtype])
    torch.testing.assert_close(dgi[..., :shape[2]], ref_dg, **TOLERANCES[dtype])
    assert (dgi[..., shape[2]:] == 0).all()  # the other half of the buffer is left alone


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('dtypes', [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16),
                                    (torch.float32, torch.bfloat16)], ids=['fp32', 'bf16', 'fp32+bf16'])
def test_residual_add_with_and_without_drop_path(shape, dtypes):
    res, y = tokens(*shape, dtypes[0], 0), tokens(*shape, dtypes[1], 1)
    tol = TOLERANCES[torch.bfloat16 if torch.bfloat16 in dtypes else torch.float32]
    out = residual_add(res, y)
    assert out.dtype == torch.result_type(res, y)
    torch.testing.assert_close(out, residual_add_reference(res, y), **tol)
    keep = torch.tensor([1.0, 0.0, 1.0], device=DEVICE)[:shape[0]]
    out = residual_add(res, y, keep, 0.7)
    torch.testing.assert_close(out, residual_add_reference(res, y, keep, 0.7), **tol)
    if shape[0] > 1:
        assert torch.equal(out[1], res[1].to(out.dtype))  # a dropped sample keeps its residual only
    d = tokens(*shape, dtypes[0], 2)
    grad = drop_path_grad(d, keep, 0.7, dtypes[1])
    assert grad.dtype == dtypes[1]
    torch.testing.assert_close(grad, drop_path_grad_reference(d, keep, 0.7, dtypes[1]), **tol)


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('dtype', DTYPES, ids=['fp32', 'bf16'])
def test_gelu_and_its_backward(shape, dtype):
    a, dh = tokens(*shape, dtype, 0, scale=3.0), tokens(*shape, dtype, 1)
    torch.testing.assert_close(gelu(a), gelu_reference(a), **TOLERANCES[dtype])
    h, da = gelu_with_grad(a, dh)
    ref_h, ref_da = gelu_reference(a, dh)
    torch.testing.assert_close(h, ref_h, **TOLERANCES[dtype])
    torch.testing.assert_close(da, ref_da, **TOLERANCES[dtype])


def float64_column_sums(t):
    return t.reshape(-1, t.shape[-1]).double().sum(0)


@pytest.mark.parametrize('shape', SHAPES + [(2, 4200, 32)])
@pytest.mark.parametrize('dtype', DTYPES, ids=['fp32', 'bf16'])
def test_bias_gradients_from_column_sums(shape, dtype):
    """The drop-path and GELU gradients with their column partial sums: the gradients are those without, and
    finish_column_sums (one or two partials in one launch, of different widths) gives their sums over tokens in
    float32. (2, 4200, 32) has 66 row blocks: the finishing loop takes two steps."""
    b, n, c = shape
    d = tokens(b, n, c, torch.float32, 0)
    keep = torch.tensor([1.0, 0.0, 1.0], device=DEVICE)[:b]
    grad, grad_sums = drop_path_grad(d, keep, 0.7, dtype, column_sums=True)
    assert torch.equal(grad, drop_path_grad(d, keep, 0.7, dtype))
    a, dh = tokens(b, n, 4 * c, dtype, 1, scale=3.0), tokens(b, n, 4 * c, dtype, 2)
    h, da, da_sums = gelu_with_grad(a, dh, column_sums=True)
    ref_h, ref_da = gelu_with_grad(a, dh)
    assert torch.equal(h, ref_h) and torch.equal(da, ref_da)
    both = finish_column_sums(grad_sums, da_sums)
    alone, = finish_column_sums(da_sums)
    for got, values in ((both[0], grad), (both[1], da), (alone, da)):
        assert got.dtype == torch.float32 and got.shape == (values.shape[-1],)
        torch.testing.assert_close(got.double(), float64_column_sums(values), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match='one or two partials'):
        finish_column_sums(grad_sums, da_sums, grad_sums)


@pytest.mark.parametrize('shape', SHAPES + [(3, 700, 24)])
@pytest.mark.parametrize('dtype', DTYPES, ids=['fp32', 'bf16'])
def test_column_sums_of_one_or_two_tensors(shape, dtype):
    """column_sums: the float32 sums over tokens of one tensor, or of two of different widths (a strided view
    among them) in one launch, where each program sums a range of tokens and the last to finish a column block
    adds up the partials. A second call gives the same numbers: the arrival counters went back to zero."""
    b, n, c = shape
    a = tokens(b, n, 2 * c, dtype, 0)[..., c // 2:c // 2 + c]
    wide = tokens(b, n, 3 * c, dtype, 1)
    both = column_sums(a, wide)
    alone, = column_sums(wide)
    for got, values in ((both[0], a), (both[1], wide), (alone, wide)):
        assert got.dtype == torch.float32 and got.shape == (values.shape[-1],)
        # float32 sums: within a few float32 roundings (6e-8 each) of the sum of the magnitudes; a partial lost or
        # counted twice moves a column by ~1e-2 of it at MLLA-T's 134,400 tokens
        error = (got.double() - float64_column_sums(values)).abs()
        assert (error <= 1e-6 * float64_column_sums(values.abs())).all(), error.max()
    assert all(torch.equal(x, y) for x, y in zip(both, column_sums(a, wide)))
    assert all(not counters.any() for counters in live_counters())
    with pytest.raises(ValueError, match='one or two tensors'):
        column_sums(a, a, a)
    with pytest.raises(ValueError, match='same number of tokens'):
        column_sums(a, wide[:, :-1])
    with pytest.raises(ValueError, match='one dtype'):
        column_sums(a, wide.double())
    assert not column_sums(a[:, :0])[0].any()


def test_traced_column_sums_of_any_layout():
    """The op compiled products take their bias gradients from: the float32 column sums of a gradient, also of one
    whose tokens share no one stride (copied first) and of a strided view; the same numbers as column_sums."""
    wide = tokens(2, 9, 48, torch.float32, 2)
    for x in (wide, wide[..., 8:24], wide.transpose(0, 1)):
        got = traced_column_sums(x)
        assert torch.equal(got, column_sums(x.contiguous())[0])
        torch.testing.assert_close(got, float64_column_sums(x).float(), rtol=1e-5, atol=1e-5)


def test_drop_path_grad_plans_per_output_dtype():
    """One input, two output dtypes: two launch plans (a plan's kernel is compiled for its output's dtype, and on
    the GPU later calls go straight to that binary), each giving the reference's values."""
    from mlla_dense.kernels import elementwise
    d = tokens(2, 9, 16, torch.float32, 0)
    keep = torch.tensor([1.0, 0.0], device=DEVICE)
    plans = elementwise._drop_path_grad_plans[False]
    before = len(plans.cache)
    for dtype in (torch.float32, torch.bfloat16, torch.float32):
        grad = drop_path_grad(d, keep, 0.7, dtype)
        assert grad.dtype == dtype
        torch.testing.assert_close(grad, drop_path_grad_reference(d, keep, 0.7, dtype), **TOLERANCES[dtype])
    assert len(plans.cache) == before + 2


@pytest.mark.parametrize('dtype', DTYPES, ids=['fp32', 'bf16'])
def test_pack_casts_and_concatenates(dtype):
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randn(*s, generator=gen).to(DEVICE) for s in ((7, 5), (5,), (9000,), (3, 3, 3))]
    out = pack(tensors, dtype)
    assert out.dtype == dtype and out.shape == (35 + 5 + 9000 + 27,)
    torch.testing.assert_close(out, pack_reference(tensors, dtype), **TOLERANCES[dtype])
    tensors[1].add_(1.0)  # same storage, new values: packed again from the parameters as they are now
    torch.testing.assert_close(pack(tensors, dtype), pack_reference(tensors, dtype), **TOLERANCES[dtype])
    with pytest.raises(ValueError, match='contiguous tensors of one dtype'):
        pack([tensors[0].t(), tensors[1]], dtype)


@pytest.mark.parametrize('dtype', DTYPES, ids=['fp32', 'bf16'])
def test_pack_writes_block_matrices(dtype):
    """A BlockMatrix piece is written row-major with its zero blocks zeroed (the buffer starts as torch.empty, so
    a missed zero shows), between plain tensors; written out by hand, not through BlockMatrix.dense."""
    gen = torch.Generator().manual_seed(1)
    p0, p1, p2 = (torch.randn(3, 5, generator=gen).to(DEVICE) for _ in range(3))
    head, tail = torch.randn(4, generator=gen).to(DEVICE), torch.randn(2, 2, generator=gen).to(DEVICE)
    matrix = BlockMatrix([[p0, None], [None, p1], [p2, None]])
    torch.empty(10 ** 5, dtype=dtype, device=DEVICE).fill_(7.0)  # garbage where the next buffer may land
    out = pack([head, matrix, tail], dtype)
    expected = torch.zeros(9, 10)
    expected[0:3, 0:5], expected[3:6, 5:10], expected[6:9, 0:5] = p0.cpu(), p1.cpu(), p2.cpu()
    assert out.shape == (4 + 90 + 4,)
    torch.testing.assert_close(out[4:94].view(9, 10).cpu(), expected.to(dtype), **TOLERANCES[dtype])
    torch.testing.assert_close(out[:4].cpu(), head.cpu().to(dtype), **TOLERANCES[dtype])
    torch.testing.assert_close(out[94:].cpu(), tail.cpu().reshape(-1).to(dtype), **TOLERANCES[dtype])
    torch.testing.assert_close(pack_reference([head, matrix, tail], dtype), out, **TOLERANCES[dtype])
    with pytest.raises(ValueError, match='does not fit'):
        pack([BlockMatrix([[p0, torch.randn(2, 2)]])], dtype)


def test_pack_launches_only_blocks_that_hold_elements():
    """One program per PACK_BLOCK elements of each piece (a large piece beside small ones adds no empty programs
    to the small ones), and the launch plan is kept per set of pieces."""
    from mlla_dense.kernels.elementwise import PACK_BLOCK, _pack
    gen = torch.Generator().manual_seed(2)
    big, small = torch.randn(3 * PACK_BLOCK + 5, generator=gen).to(DEVICE), torch.randn(7, generator=gen).to(DEVICE)
    matrix = BlockMatrix([[small.view(1, 7), None], [None, small.view(1, 7)]])  # zero blocks get programs too
    out, plan = _pack([big, small, matrix], torch.float32)
    assert plan.launch.grid == (4 + 1 + 4, 1, 1)
    assert plan.programs.tolist() == [[0, 0], [0, 1], [0, 2], [0, 3], [1, 0], [2, 0], [3, 0], [4, 0], [5, 0]]
    torch.testing.assert_close(out, pack_reference([big, small, matrix], torch.float32), rtol=0, atol=0)
    assert _pack([big, small, matrix], torch.float32)[1] is plan


def test_cast_each_keeps_values_and_layouts():
    """Eleven tensors (two launches) of mixed dtypes and layouts, cast to bfloat16 and back to float32: each output
    is ``t.to(dtype)`` with t's strides, starts 128 bytes after another, and new inputs of the same layouts (new
    pointers, as gradients are on every step) reuse the plan and are read afresh."""
    from mlla_dense.kernels.elementwise import _cast_plans
    gen = torch.Generator().manual_seed(0)

    def inputs():
        return ([torch.randn(8, 4, 3, 3, generator=gen).to(DEVICE).to(memory_format=torch.channels_last),
                 torch.randn(7, 5, generator=gen).to(DEVICE).t(), torch.randn(9000, generator=gen).to(DEVICE),
                 torch.randn(3, 1, 2, generator=gen).to(DEVICE, torch.bfloat16)]
                + [torch.randn(i + 1, generator=gen).to(DEVICE) for i in range(7)])

    exact = dict(rtol=0, atol=0) if DEVICE == 'cuda' else TOLERANCES[torch.bfloat16]
    first = inputs()
    before = len(_cast_plans.cache)
    for tensors in (first, inputs()):
        outs = cast_each(tensors, torch.bfloat16)
        for t, out in zip(tensors, outs):
            assert out.dtype == torch.bfloat16 and out.shape == t.shape and out.stride() == t.stride()
            assert (out.data_ptr() - outs[0].data_ptr()) % 128 == 0
            torch.testing.assert_close(out, t.to(torch.bfloat16), **exact)
        for out, back in zip(outs, cast_each(outs, torch.float32)):
            assert back.dtype == torch.float32 and back.stride() == out.stride()
            assert torch.equal(back, out.float())
    assert len(_cast_plans.cache) == before + 2  # one plan per direction, kept for the second set
    with pytest.raises(ValueError, match='dense in memory'):
        cast_each([first[2][::2]], torch.bfloat16)


@triton.jit
def _activations_kernel(x_ptr, out_ptr, N, BLOCK: tl.constexpr):
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < N
    x = tl.load(x_ptr + idx, mask=mask)
    tl.store(out_ptr + idx, activations.accurate_exp(x), mask=mask)
    tl.store(out_ptr + N + idx, activations.silu(x), mask=mask)
    tl.store(out_ptr + 2 * N + idx, activations.silu_grad(x), mask=mask)
    tl.store(out_ptr + 3 * N + idx, activations.gelu(x), mask=mask)
    tl.store(out_ptr + 4 * N + idx, activations.gelu_grad(x), mask=mask)


def activation_errors(x, floor=1e-3):
    """Per activation (exp, silu, silu', gelu, gelu'), the largest error against float64 of the float32 values,
    ours and PyTorch's: |got - exact| / max(|exact|, floor) (relative, absolute near zeros), exp's relative."""
    out = torch.empty(5, x.numel(), device=x.device)
    _activations_kernel[(triton.cdiv(x.numel(), 1024),)](x, out, x.numel(), BLOCK=1024)
    exact = x.double()
    sig = torch.sigmoid(exact)
    truth = [exact.exp(), exact * sig, sig * (1 + exact * (1 - sig)), torch.nn.functional.gelu(exact),
             torch.ops.aten.gelu_backward(torch.ones_like(exact), exact)]
    ones = torch.ones_like(x)
    theirs = [x.exp(), torch.nn.functional.silu(x), torch.ops.aten.silu_backward(ones, x),
              torch.nn.functional.gelu(x), torch.ops.aten.gelu_backward(ones, x)]

    def worst(got, want, least):
        return ((got.double() - want).abs() / want.abs().clamp_min(least)).max().item()
    floors = [1e-30] + [floor] * 4
    return [(worst(o, t, f), worst(p, t, f)) for o, p, t, f in zip(out, theirs, truth, floors)]


def test_activations_match_float64():
    for ours, _ in activation_errors(torch.linspace(-20, 20, 4001, device=DEVICE)):
        assert ours < 2e-4


@pytest.mark.gpu
def test_gpu_activations_as_accurate_as_pytorch():
    """On the GPU (where tl.exp is 2^(x log2 e) with a rounded product) each activation stays within a few ulps of
    float64 wherever PyTorch's does (4e-7 ~ 3.4 ulp of float32)."""
    for ours, theirs in activation_errors(torch.linspace(-60, 60, 1_000_001, device='cuda')):
        assert ours < max(4e-7, 1.5 * theirs), (ours, theirs)


@pytest.mark.gpu
@pytest.mark.parametrize('dtype', DTYPES, ids=['fp32', 'bf16'])
def test_gpu_mlla_t_stage1_shapes(dtype):
    shape = (2, 67200, 64)
    test_silu_gate_and_backward(shape, dtype)
    test_gelu_and_its_backward((2, 67200, 256), dtype)
    test_residual_add_with_and_without_drop_path(shape, (dtype, dtype))
    test_bias_gradients_from_column_sums(shape, dtype)
    test_column_sums_of_one_or_two_tensors(shape, dtype)
