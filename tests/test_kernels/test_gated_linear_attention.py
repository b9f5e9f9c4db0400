"""Gated linear attention: the chunked reference against a token-by-token recurrence, the Triton kernels against
the reference (output, normalizer and every gradient).

CPU: through the Triton interpreter (TRITON_INTERPRET=1, set by conftest) on small odd shapes.
GPU (marker `gpu`): MLLA-T's stage shapes of a 2x3x800x1344 input and an int64-offset case.
"""
import pytest
import torch
import triton
import triton.language as tl
from helpers import assert_one_graph_matching_eager

from mlla_dense.kernels.gated_linear_attention import gated_linear_attention, gated_linear_attention_reference
from mlla_dense.kernels.gated_linear_attention import launch
from mlla_dense.kernels.gated_linear_attention.common import mm_float32, tf32_high
from mlla_dense.kernels.gated_linear_attention.op import gated_linear_attention_bwd, gated_linear_attention_fwd

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
ALL = ('rows', 'rows_reversed', 'columns', 'columns_reversed')


@pytest.fixture
def triton_backend(use_backend):
    use_backend('triton')


def make_inputs(b, h, w, heads, k_dim, v_dim, per_channel, dtype, device=DEVICE, seed=0):
    """Positive queries and keys (as after elu + 1), decays in [e^-0.5, 1] per token (a third of them near 0
    for one decay per head, where the state forgets almost everything)."""
    gen = torch.Generator().manual_seed(seed)
    n = h * w
    q = torch.rand(b, n, heads, k_dim, generator=gen) + 0.1
    k = torch.rand(b, n, heads, k_dim, generator=gen) + 0.1
    v = torch.randn(b, n, heads, v_dim, generator=gen)
    g = -torch.rand(b, n, heads, *((k_dim,) if per_channel else ()), generator=gen) * 0.5
    if not per_channel:
        g[:, ::3] -= 8.0
    return [t.to(device, dtype) for t in (q, k, v)] + [g.to(device, dtype)]


def recurrence(q, k, v, g, directions, grid):
    """o and z by the definition: S_t = a_t S_(t-1) + k_t^T v_t, o_t = q_t S_t, z likewise, token by token along
    each direction (orders written out as lists), float64."""
    b, n, heads, k_dim = q.shape
    h, w = grid
    rows = [r * w + c for r in range(h) for c in range(w)]
    columns = [r * w + c for c in range(w) for r in range(h)]
    orders = {'rows': rows, 'rows_reversed': rows[::-1], 'columns': columns, 'columns_reversed': columns[::-1]}
    o = torch.zeros(b, n, heads, v.shape[-1], dtype=torch.float64)
    z = torch.zeros(b, n, heads, dtype=torch.float64)
    q, k, v, g = (t.double().cpu() for t in (q, k, v, g))
    for direction in directions:
        for i in range(b):
            for head in range(heads):
                state = torch.zeros(k_dim, v.shape[-1], dtype=torch.float64)
                norm = torch.zeros(k_dim, dtype=torch.float64)
                for t in orders[direction]:
                    a = g[i, t, head].exp().reshape(-1)
                    state = a[:, None] * state + torch.outer(k[i, t, head], v[i, t, head])
                    norm = a * norm + k[i, t, head]
                    o[i, t, head] += q[i, t, head] @ state
                    z[i, t, head] += q[i, t, head] @ norm
    return o, z


def rel_err(a, b):
    return ((a.double().cpu() - b.double().cpu()).norm() / b.double().cpu().norm()).item()


@pytest.mark.parametrize('per_channel', [False, True])
@pytest.mark.parametrize('grid,directions', [((5, 7), ('rows',)), ((3, 29), ALL), ((9, 4), ('columns_reversed',))])
def test_reference_equals_recurrence(per_channel, grid, directions):
    """float64: the chunked reference (chunks of 64 / 16 tokens, log-depth state pass) is the recurrence."""
    q, k, v, g = make_inputs(2, *grid, 2, 6, 5, per_channel, torch.float64, device='cpu')
    o, z = gated_linear_attention_reference(q, k, v, g, directions, grid)
    o_ref, z_ref = recurrence(q, k, v, g, directions, grid)
    assert rel_err(o, o_ref) < 1e-12 and rel_err(z, z_ref) < 1e-12


def check(b, h, w, heads, k_dim, v_dim, per_channel, directions, dtype, tol, seed=0):
    q, k, v, g = make_inputs(b, h, w, heads, k_dim, v_dim, per_channel, dtype, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    do = torch.randn(b, h * w, heads, v_dim, generator=gen).to(q.device)
    dz = torch.randn(b, h * w, heads, generator=gen).to(q.device)
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v, g)]
    o, z = gated_linear_attention(*leaves, directions, (h, w))
    grads = torch.autograd.grad((o * do).sum() + (z * dz).sum(), leaves)
    ref_leaves = [t.detach().double().requires_grad_() for t in (q, k, v, g)]
    o_ref, z_ref = gated_linear_attention_reference(*ref_leaves, directions, (h, w))
    ref_grads = torch.autograd.grad((o_ref * do.double()).sum() + (z_ref * dz.double()).sum(), ref_leaves)
    assert o.dtype == z.dtype == torch.float32 and o.shape == (b, h * w, heads, v_dim)
    assert all(gr.dtype == t.dtype and gr.shape == t.shape for gr, t in zip(grads, leaves))
    errors = {'o': rel_err(o, o_ref), 'z': rel_err(z, z_ref)}
    errors.update({name: rel_err(a, r) for name, a, r in zip(('dq', 'dk', 'dv', 'dlog_decay'), grads, ref_grads)})
    limits = dict.fromkeys(errors, tol)
    if dtype == torch.float32:
        limits['dlog_decay'] = max(tol, 10 * float32_reference_decay_error(q, k, v, g, do, dz, directions, (h, w),
                                                                            ref_grads[3]))
    exceeded = {name: (errors[name], limits[name]) for name in errors if not errors[name] < limits[name]}
    assert not exceeded, f'(relative error, limit) of what exceeds its limit: {exceeded}; all errors: {errors}'


def float32_reference_decay_error(q, k, v, g, do, dz, directions, grid, truth):
    """Relative error of the PyTorch reference's own float32 log-decay gradient: a suffix sum over the scan of
    terms that nearly cancel, so at tens of thousands of tokens float32 itself is ~1e-6 from float64 there."""
    leaves = [t.detach().float().requires_grad_() for t in (q, k, v, g)]
    o, z = gated_linear_attention_reference(*leaves, directions, grid)
    grad = torch.autograd.grad((o * do).sum() + (z * dz).sum(), leaves[3])[0]
    return rel_err(grad, truth)


# (B, H, W, heads, K, V, per-channel decays, directions): chunk-crossing and partial chunks (16-token chunks under
# the interpreter), widths that are not powers of two, key widths above one 16-channel slice, values wider than
# one 64-channel block (a single head's), all four directions.
CPU_CASES = [(2, 5, 7, 2, 8, 12, False, ('rows',)), (1, 3, 11, 1, 16, 80, False, ALL),
             (1, 4, 9, 3, 20, 16, True, ALL), (2, 6, 5, 1, 40, 72, True, ('rows_reversed', 'columns'))]


@pytest.mark.parametrize('case', CPU_CASES)
def test_matches_reference_fp32(triton_backend, case):
    check(*case, torch.float32, 1e-5)


@pytest.mark.parametrize('dtype,tol', [(torch.bfloat16, 2e-2), (torch.float16, 5e-3)])
@pytest.mark.parametrize('per_channel', [False, True])
def test_matches_reference_16_bit(triton_backend, dtype, tol, per_channel):
    """16-bit inputs (rounded once, so compared with the reference on the rounded values); outputs float32."""
    check(2, 5, 7, 2, 16, 16, per_channel, ('rows', 'columns_reversed'), dtype, tol)


def test_decay_gradient_as_accurate_as_float32_reference_over_long_scans(triton_backend):
    """960 tokens (60 chunks under the interpreter), one decay per key channel: the log decays' gradient sums
    terms that cancel over the scan; summed over the whole scan in float32 it came out 6.9x further from float64
    than the float32 reference here (benchmarks/NOTES.md)."""
    h, w, directions = 24, 40, ('rows', 'columns_reversed')
    q, k, v, g = make_inputs(1, h, w, 1, 16, 16, True, torch.float32)
    gen = torch.Generator().manual_seed(1)
    do = torch.randn(1, h * w, 1, 16, generator=gen).to(q.device)
    dz = torch.randn(1, h * w, 1, generator=gen).to(q.device)
    leaves = [t.clone().requires_grad_() for t in (q, k, v, g)]
    o, z = gated_linear_attention(*leaves, directions, (h, w))
    grad = torch.autograd.grad((o * do).sum() + (z * dz).sum(), leaves[3])[0]
    ref_leaves = [t.double().requires_grad_() for t in (q, k, v, g)]
    o_ref, z_ref = gated_linear_attention_reference(*ref_leaves, directions, (h, w))
    truth = torch.autograd.grad((o_ref * do.double()).sum() + (z_ref * dz.double()).sum(), ref_leaves[3])[0]
    error = rel_err(grad, truth)
    reference_error = float32_reference_decay_error(q, k, v, g, do, dz, directions, (h, w), truth)
    assert error < 3 * reference_error, (error, reference_error)


def test_unused_normalizer_and_output(triton_backend):
    """Gradients when only o or only z reaches the loss (the other's gradient is None inside the op)."""
    q, k, v, g = make_inputs(1, 4, 5, 2, 8, 8, False, torch.float32)
    for pick in (0, 1):
        leaves = [t.clone().requires_grad_() for t in (q, k, v, g)]
        grads = torch.autograd.grad(gated_linear_attention(*leaves, ALL, (4, 5))[pick].sum(), leaves,
                                    allow_unused=True)
        ref_leaves = [t.double().requires_grad_() for t in (q, k, v, g)]
        ref_grads = torch.autograd.grad(gated_linear_attention_reference(*ref_leaves, ALL, (4, 5))[pick].sum(),
                                        ref_leaves, allow_unused=True)
        for a, r in zip(grads, ref_grads):
            assert (r is None and not a.abs().sum()) or rel_err(a, r) < 1e-5


@pytest.mark.parametrize('per_channel', [False, True])
def test_wide_state_pass(triton_backend, monkeypatch, per_channel):
    """The state pass's tiling for many (batch, head) rows (64 state elements per program; 576 per row here, so
    the last program's are partly masked), forced on a small case."""
    monkeypatch.setitem(launch.TUNING, 'pass_wide', dict(elements=64, chunks=8))
    monkeypatch.setitem(launch.TUNING, 'pass_wide_programs', 1)
    check(1, 4, 9, 3, 20, 16, per_channel, ALL, torch.float32, 1e-5)


def test_state_pass_tiling_follows_the_grid(monkeypatch):
    """Few rows: narrow programs; from ``pass_wide_programs`` programs on: wide ones; never more chunks per step
    than the sequence has (at least two)."""
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    q = torch.empty(1, 1, 1, 32)
    lay = launch.Layout(q, q, per_channel=False)
    narrow, wide = launch.TUNING['pass_narrow'], launch.TUNING['pass_wide']
    assert lay.pass_tiling(4, 1000) == (narrow['elements'], narrow['chunks'])
    assert lay.pass_tiling(4096, 1000) == (wide['elements'], wide['chunks'])
    assert lay.pass_tiling(4, 3)[1] == 4 and lay.pass_tiling(4, 1)[1] == 2


@triton.jit
def _tf32_high_kernel(x_ptr, high_ptr, N: tl.constexpr):
    tl.store(high_ptr + tl.arange(0, N), tf32_high(tl.load(x_ptr + tl.arange(0, N))))


def test_tf32_split(triton_backend):
    """The split behind the backward's two-product float32 products: the leading part keeps tf32's 10 mantissa
    bits (its low 13 bits are zero, so a tf32 product reads it exactly), and the rest, exact in float32, is below
    2^-10 of x."""
    x = torch.randn(4096, dtype=torch.float64) * 10.0 ** torch.randint(-30, 30, (4096,))
    x = x.float()
    high = torch.empty_like(x)
    _tf32_high_kernel[(1,)](x, high, N=4096)
    assert not (high.view(torch.int32) & 0x1FFF).any()
    assert torch.equal(torch.sign(high), torch.sign(x)) and (high.abs() <= x.abs()).all()
    assert ((x - high).abs() < 2.0 ** -10 * x.abs()).all()
    assert torch.equal(high + (x - high), x)


def check_without_grad(b, h, w, heads, k_dim, v_dim, per_channel, dtype, tol):
    """The forward without autograd (no states kept, chunk states in the forward's operand dtype) against the
    float64 reference, on the four directions (one state buffer serves them in turn)."""
    q, k, v, g = make_inputs(b, h, w, heads, k_dim, v_dim, per_channel, dtype)
    with torch.no_grad():
        o, z = gated_linear_attention(q, k, v, g, ALL, (h, w))
    o_ref, z_ref = gated_linear_attention_reference(*(t.double() for t in (q, k, v, g)), ALL, (h, w))
    assert o.dtype == z.dtype == torch.float32
    assert rel_err(o, o_ref) < tol and rel_err(z, z_ref) < tol


@pytest.mark.parametrize('per_channel', [False, True])
def test_forward_without_grad(triton_backend, per_channel):
    check_without_grad(2, 5, 7, 2, 20, 12, per_channel, torch.float32, 1e-5)


def test_strided_inputs(triton_backend):
    """q and k as views of one projection (B, N, 2HK), v with a batch stride of its own: read in place."""
    q, k, v, g = make_inputs(2, 5, 6, 2, 16, 16, False, torch.float32)
    qk = torch.cat([q, k], dim=-1)
    wide = torch.randn(2, 30, 2, 24, device=DEVICE)[..., 4:20]
    wide.copy_(v)
    o, z = gated_linear_attention(qk[..., :16], qk[..., 16:], wide, g, ALL, (5, 6))
    o_ref, z_ref = gated_linear_attention_reference(q, k, v, g, ALL, (5, 6))
    assert rel_err(o, o_ref) < 1e-5 and rel_err(z, z_ref) < 1e-5


def test_deterministic(triton_backend):
    q, k, v, g = make_inputs(1, 5, 7, 2, 16, 16, True, torch.float32)

    def run():
        leaves = [t.clone().requires_grad_() for t in (q, k, v, g)]
        o, z = gated_linear_attention(*leaves, ('rows', 'columns_reversed'), (5, 7))
        return [o, z] + list(torch.autograd.grad(o.sum() + z.square().sum(), leaves))

    assert all(torch.equal(a, b) for a, b in zip(run(), run()))


def test_bad_inputs_raise(triton_backend):
    q, k, v, g = make_inputs(1, 4, 4, 2, 8, 8, False, torch.float32)
    with pytest.raises(ValueError, match='log_decay'):
        gated_linear_attention(q, k, v, g[..., None].expand(-1, -1, -1, 3))
    with pytest.raises(ValueError, match='grid'):
        gated_linear_attention(q, k, v, g, ('columns',), (4, 5))
    with pytest.raises(ValueError, match='directions'):
        gated_linear_attention(q, k, v, g, ('diagonal',))
    with pytest.raises(ValueError, match=r'\(B, N, H, K\)'):
        gated_linear_attention(q, k[..., :4], v, g)


def test_torch_compile_without_graph_breaks(triton_backend):
    """Under torch.compile the kernels are custom ops: one graph, the same gradients as eager (inductor on the
    GPU in bf16; aot_eager on CPU, which runs dynamo and AOT autograd on the fake implementations)."""
    cuda = DEVICE == 'cuda'
    h, w = (20, 24) if cuda else (4, 5)
    inputs = make_inputs(2 if cuda else 1, h, w, 2, 32 if cuda else 8, 32 if cuda else 8, False,
                         torch.bfloat16 if cuda else torch.float32)

    def fn(q, k, v, g):
        o, z = gated_linear_attention(q, k, v, g, ALL, (h, w))
        return (o / (z[..., None] + 1e-6)).square().sum()

    assert_one_graph_matching_eager(fn, inputs, 'inductor' if cuda else 'aot_eager')


def test_torch_compile_without_grad_keeps_no_states(triton_backend, monkeypatch):
    """Compiled, a forward that no backward follows asks the custom op for no states, and gives eager's outputs."""
    q, k, v, g = make_inputs(1, 4, 5, 2, 8, 8, False, torch.float32)
    kept = []
    forward = launch.forward

    def recording_forward(*args, keep_states=True):
        kept.append(keep_states)
        return forward(*args, keep_states=keep_states)

    monkeypatch.setattr(launch, 'forward', recording_forward)
    torch._dynamo.reset()
    compiled = torch.compile(lambda *t: gated_linear_attention(*t, ALL, (4, 5)), fullgraph=True, backend='aot_eager')
    with torch.no_grad():
        outputs = compiled(q, k, v, g)
    assert kept and not any(kept)
    eager = gated_linear_attention(q, k, v, g, ALL, (4, 5))
    assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-6) for a, b in zip(outputs, eager))


def test_custom_op_registration(triton_backend):
    """torch.library.opcheck: schema, fake implementation against the real one, autograd registration."""
    q, k, v, g = (t.requires_grad_() for t in make_inputs(1, 3, 5, 2, 8, 8, True, torch.float32))
    results = torch.library.opcheck(gated_linear_attention_fwd, (q, k, v, g, 'rows,columns', [3, 5]))
    assert set(results.values()) == {'SUCCESS'}, results
    with torch.no_grad():
        results = torch.library.opcheck(gated_linear_attention_fwd, (q, k, v, g, 'rows,columns', [3, 5], False))
    assert set(results.values()) == {'SUCCESS'}, results
    o, z, states = gated_linear_attention_fwd(q, k, v, g, 'rows,columns', [3, 5])
    grads = gated_linear_attention_bwd(torch.randn_like(o), torch.randn_like(z), q, k, v, g, states, 'rows,columns',
                                       [3, 5])
    assert all(gr.is_contiguous() and gr.shape == t.shape for gr, t in zip(grads, (q, k, v, g)))


# MLLA-T stages for a 2x3x800x1344 input (two heads of 32 channels at stage 1), stages 1, 3 and 4 of 64x224x224
# (the last two batch-cut to 8: sequences of a few chunks, whose state pass takes fewer chunks per step).
GPU_SHAPES = [(2, 200, 336, 2, 32, 32), (2, 100, 168, 4, 32, 32), (2, 50, 84, 8, 32, 32), (2, 25, 42, 16, 32, 32),
              (64, 56, 56, 2, 32, 32), (8, 14, 14, 8, 32, 32), (8, 7, 7, 16, 32, 32)]


@pytest.mark.gpu
@pytest.mark.parametrize('shape', GPU_SHAPES)
@pytest.mark.parametrize('per_channel', [False, True])
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5), (torch.bfloat16, 2e-2), (torch.float16, 5e-3)])
def test_gpu_matches_fp64_reference(shape, per_channel, dtype, tol):
    check(*shape, per_channel, ALL, dtype, tol)


@pytest.mark.gpu
@pytest.mark.parametrize('shape', GPU_SHAPES)
@pytest.mark.parametrize('per_channel', [False, True])
def test_gpu_forward_without_grad_bf16(shape, per_channel):
    check_without_grad(*shape, per_channel, torch.bfloat16, 2e-2)


@pytest.mark.gpu
def test_gpu_int64_offsets():
    """Batch and token offsets beyond 2^31 elements: strided views into one 3 * 2^31-element buffer."""
    heads, k_dim, h, w = 2, 32, 8, 16
    n = h * w
    buffer = torch.empty(3 * 2 ** 31, dtype=torch.bfloat16, device='cuda')
    q = buffer.as_strided((2, n, heads, k_dim), (2 ** 31 + 64, 2 ** 24, k_dim, 1))
    _, k, v, g = make_inputs(2, h, w, heads, k_dim, k_dim, False, torch.bfloat16)
    q.copy_(k.flip(1))
    o, z = gated_linear_attention(q, k, v, g, ALL, (h, w))
    o_ref, z_ref = gated_linear_attention_reference(q.contiguous().double(), k.double(), v.double(), g.double(),
                                                    ALL, (h, w))
    assert rel_err(o, o_ref) < 2e-2 and rel_err(z, z_ref) < 2e-2


@triton.jit
def _mm_float32_kernel(a_ptr, b_ptr, out_ptr, A_EXACT: tl.constexpr, B_EXACT: tl.constexpr):
    rows, cols = tl.arange(0, 64)[:, None], tl.arange(0, 64)[None, :]
    a, b = tl.load(a_ptr + rows * 64 + cols), tl.load(b_ptr + rows * 64 + cols)
    tl.store(out_ptr + rows * 64 + cols, mm_float32(a, b, A_EXACT, B_EXACT))


@pytest.mark.gpu
@pytest.mark.parametrize('exact', ['a', 'b', 'neither'])
def test_gpu_float32_products(exact):
    """mm_float32 on the tensor cores is float32-accurate (as tf32x3) with one operand of bfloat16 values and two
    products, where a plain tf32 product is ~1e-3 off."""
    gen = torch.Generator(device='cuda').manual_seed(0)
    a, b = (torch.randn(64, 64, device='cuda', generator=gen) for _ in range(2))
    if exact == 'a':
        a = a.bfloat16().float()
    if exact == 'b':
        b = b.bfloat16().float()
    out = torch.empty_like(a)
    _mm_float32_kernel[(1,)](a, b, out, A_EXACT=exact == 'a', B_EXACT=exact == 'b')
    truth = a.double() @ b.double()
    assert rel_err(out, truth) < 1e-6
