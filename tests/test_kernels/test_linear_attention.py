"""Triton linear attention vs the PyTorch reference: forward and every gradient.

CPU: through the Triton interpreter (TRITON_INTERPRET=1, set by conftest) on small odd shapes.
GPU (marker `gpu`): the four MLLA-T stage shapes of a 2x3x800x1344 input and an int64-offset case.
"""
import pytest
import torch
from helpers import assert_one_graph_matching_eager

from mlla_dense.kernels import backend
from mlla_dense.kernels.linear_attention import linear_attention, linear_attention_reference, rope_tables
from mlla_dense.kernels.linear_attention.rope import build_rope_tables
from mlla_dense.kernels.kernel_op import clear_plans
from mlla_dense.kernels.linear_attention.op import linear_attention_op

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'


@pytest.fixture
def triton_backend(use_backend):
    use_backend('triton')


def make_inputs(b, h, w, c, dtype, device=DEVICE, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = h * w
    qk = torch.randn(b, n, 2 * c, generator=gen).to(device, dtype)
    v = torch.randn(b, n, c, generator=gen).to(device, dtype)
    weight = (torch.randn(c, 1, 3, 3, generator=gen) * 0.3).to(device)
    bias = torch.randn(c, generator=gen).to(device)
    return qk, v, weight, bias


def fp64_reference(qk, v, weight, bias, hw, heads, grad):
    """Output and gradients of the reference evaluated in float64 on the same inputs."""
    leaves = [t.detach().double().requires_grad_() for t in (qk, v, weight, bias)]
    out = linear_attention_reference(leaves[0], leaves[1], hw, heads, *leaves[2:])
    return out, torch.autograd.grad(out, leaves, grad.double())


def run_kernel(qk, v, weight, bias, hw, heads, grad):
    leaves = [t.detach().clone().requires_grad_() for t in (qk, v, weight, bias)]
    out = linear_attention(leaves[0], leaves[1], hw, heads, *leaves[2:])
    return out, torch.autograd.grad(out, leaves, grad)


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def check(b, h, w, c, heads, dtype, tol, seed=0):
    qk, v, weight, bias = make_inputs(b, h, w, c, dtype, seed=seed)
    grad = torch.randn(b, h * w, c, generator=torch.Generator().manual_seed(seed + 1)).to(qk.device, dtype)
    out, grads = run_kernel(qk, v, weight, bias, (h, w), heads, grad)
    ref, ref_grads = fp64_reference(qk, v, weight, bias, (h, w), heads, grad)
    assert out.dtype == dtype and out.shape == (b, h * w, c)
    assert torch.isfinite(out).all()
    errors = {'out': rel_err(out, ref)}
    errors.update({name: rel_err(g, r) for name, g, r in zip(('dqk', 'dv', 'dweight', 'dbias'), grads, ref_grads)})
    assert all(e < tol for e in errors.values()), errors


# (B, H, W, C, heads): odd grids, a token count that is not a multiple of the block, head_dim 16/32/48/64,
# an odd head count whose middle head straddles the row/column halves of RoPE, a single-row grid.
CPU_SHAPES = [(2, 5, 7, 32, 2), (1, 9, 6, 48, 3), (1, 3, 29, 32, 1), (3, 4, 4, 64, 4), (2, 1, 3, 64, 1),
              (1, 11, 13, 96, 1)]


@pytest.mark.parametrize('shape', CPU_SHAPES)
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_matches_reference(triton_backend, shape, dtype, tol):
    check(*shape, dtype, tol)


# Program layouts other than the default (one head per program): several heads per program with block-diagonal
# products (G = 2 with a last group of one head; G = 4 of 16-channel heads), and token tiles that differ between
# the passes.
TUNINGS = [({'group_width': 64}, (1, 5, 6, 96, 3)), ({'group_width': 64}, (3, 4, 4, 64, 4)),
           ({'tiles': dict(reduce=(32, 4), output=(16, 2), grad_q=(32, 4), grad_kv=(64, 4)), 'output_tiles': 3},
            (2, 7, 9, 64, 2))]


@pytest.mark.parametrize('tuning,shape', TUNINGS)
def test_program_layouts_match_reference(triton_backend, monkeypatch, tuning, shape):
    from mlla_dense.kernels.linear_attention import launch
    monkeypatch.setattr(launch, 'TUNING', dict(launch.TUNING, **tuning))
    clear_plans()
    try:
        check(*shape, torch.float32, 1e-5)
    finally:
        clear_plans()


def test_fp16_large_activations_stay_finite(triton_backend):
    """fp16 inputs whose k are large and negative: phi(k) underflows to ~0, the normalizer must not blow up."""
    qk, v, weight, bias = make_inputs(1, 6, 5, 32, torch.float16)
    qk[..., 32:] -= 12.0
    grad = torch.randn_like(v)
    out, grads = run_kernel(qk, v, weight, bias, (6, 5), 2, grad)
    ref, ref_grads = fp64_reference(qk, v, weight, bias, (6, 5), 2, grad)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads)
    assert rel_err(out, ref) < 1e-2


def test_strided_inputs(triton_backend):
    """Batch/token strides other than contiguous are read in place (and give the same result)."""
    qk, v, weight, bias = make_inputs(2, 5, 6, 32, torch.float32)
    big = torch.randn(2, 30, 3 * 64, device=DEVICE)
    qk_view = big[:, :, 10:10 + 64]
    qk_view.copy_(qk)
    out = linear_attention(qk_view, v, (5, 6), 2, weight, bias)
    ref = linear_attention_reference(qk, v, (5, 6), 2, weight, bias)
    assert rel_err(out, ref) < 1e-5


def test_deterministic(triton_backend):
    qk, v, weight, bias = make_inputs(1, 9, 10, 32, torch.float32)
    grad = torch.randn_like(v)
    first = run_kernel(qk, v, weight, bias, (9, 10), 2, grad)
    second = run_kernel(qk, v, weight, bias, (9, 10), 2, grad)
    assert torch.equal(first[0], second[0])
    assert all(torch.equal(a, b) for a, b in zip(first[1], second[1]))


def test_bad_shapes_raise(triton_backend):
    qk, v, weight, bias = make_inputs(1, 4, 4, 32, torch.float32)
    with pytest.raises(ValueError, match='4x5 grid'):
        linear_attention(qk, v, (4, 5), 2, weight, bias)
    with pytest.raises(ValueError, match='heads'):
        linear_attention(qk, v, (4, 4), 3, weight, bias)
    with pytest.raises(ValueError, match=r'\(B, N, 2C\)'):
        linear_attention(qk[..., :60], v, (4, 4), 2, weight, bias)


def test_rope_tables_cached_once_per_grid():
    first = rope_tables(7, 9, 64, 'cpu')
    assert rope_tables(7, 9, 64, 'cpu') is first
    other = rope_tables(9, 7, 64, 'cpu')
    assert other is not first and other[0].shape == (16, 64)


def test_rope_tables_half_precision_for_16_bit_inputs():
    """The float16 tables the kernels read for 16-bit inputs are the float32 ones rounded once, cached apart."""
    full = rope_tables(7, 9, 64, 'cpu')
    half = rope_tables(7, 9, 64, 'cpu', torch.float16)
    assert half[0].dtype == torch.float16 and rope_tables(7, 9, 64, 'cpu', torch.float16) is half
    for h, f in zip(half, full):
        assert torch.equal(h, f.half())
        assert (h.float() - f).abs().max() <= 2 ** -12


def test_rope_tables_built_in_a_compiled_graph_equal_the_cached_ones():
    """Op by op under torch.compile each stage builds its tables inside the graph: Inductor must be able to
    generate that code, and its values are the eager tables' up to its own sin/cos rounding."""
    build = torch.compile(lambda scale: [t * scale for t in build_rope_tables(13, 21, 64, 'cpu')], fullgraph=True)
    for compiled, eager in zip(build(torch.ones(())), rope_tables(13, 21, 64, 'cpu')):
        assert compiled.shape == (34, 64) and (compiled - eager).abs().max() <= 2.5e-7


def test_backend_switch(monkeypatch, use_backend):
    with pytest.raises(ValueError, match='auto, triton, torch'):
        use_backend('cuda-please')
    use_backend('auto')
    assert backend.selected_backend() == 'auto' and backend.use_triton(torch.zeros(1)) is False
    use_backend('torch')
    assert backend.use_triton(torch.zeros(1)) is False
    use_backend('triton')
    assert backend.use_triton(torch.zeros(1)) is True  # the tests' interpreter
    monkeypatch.setattr(backend, '_INTERPRETER', False)
    with pytest.raises(RuntimeError, match='TRITON_INTERPRET=1'):
        backend.use_triton(torch.zeros(1))


# MLLA-T stages for a 2x3x800x1344 input, plus stage 1 of 8x512x512 and 64x224x224.
GPU_SHAPES = [(2, 200, 336, 64, 2), (2, 100, 168, 128, 4), (2, 50, 84, 256, 8), (2, 25, 42, 512, 16),
              (8, 128, 128, 64, 2), (64, 56, 56, 64, 2)]


@pytest.mark.gpu
@pytest.mark.parametrize('shape', GPU_SHAPES)
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5), (torch.bfloat16, 1e-2), (torch.float16, 5e-3)])
def test_gpu_matches_fp64_reference(shape, dtype, tol):
    """Real shapes: fp32 within 1e-5, bf16 within 1e-2 and fp16 within 5e-3 relative L2 of float64."""
    check(*shape, dtype, tol)


@pytest.mark.gpu
def test_gpu_int64_offsets():
    """Batch and token offsets beyond 2^31 elements: strided views into one 3 * 2^31-element buffer."""
    c, heads, h, w = 64, 2, 8, 16
    n = h * w
    buffer = torch.empty(3 * 2 ** 31, dtype=torch.bfloat16, device='cuda')
    qk = buffer.as_strided((2, n, 2 * c), (2 ** 31 + 64, 2 ** 25, 1))
    qk.copy_(torch.randn(2, n, 2 * c, device='cuda'))
    v = torch.randn(2, n, c, device='cuda', dtype=torch.bfloat16)
    weight, bias = torch.randn(c, 1, 3, 3, device='cuda') * 0.3, torch.randn(c, device='cuda')
    out = linear_attention(qk, v, (h, w), heads, weight, bias)
    ref = linear_attention_reference(qk.contiguous().double(), v.double(), (h, w), heads, weight.double(),
                                     bias.double())
    assert rel_err(out, ref) < 1e-2


@pytest.mark.gpu
def test_gpu_dependent_launch_bit_identical(monkeypatch):
    """Dependent launches (kernels/dependent_launch.py) only move when kernels start: forward and gradients equal
    those of plain launches bit for bit, eagerly and replayed from a CUDA graph (stage 4: short kernels)."""
    qk, v, weight, bias = make_inputs(2, 25, 42, 512, torch.bfloat16)
    grad = torch.randn_like(v)
    leaves = [t.detach().clone().requires_grad_() for t in (qk, v, weight, bias)]

    def step():
        out = linear_attention(leaves[0], leaves[1], (25, 42), 16, *leaves[2:])
        return [out] + list(torch.autograd.grad(out, leaves, grad))

    results = {}
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    for setting in ('0', '1'):
        monkeypatch.setenv('MLLA_DENSE_DEPENDENT_LAUNCH', setting)
        clear_plans()  # launches are planned (and the setting read) once per layout
        # Eager steps on a side stream, like the warm-ups before any capture: with them on the default stream the
        # captured backward failed here (cudaErrorStreamCaptureImplicit: the autograd engine made the default
        # stream wait on the capturing one, the case training_graphs.py describes).
        with torch.cuda.stream(stream):
            eager = [t.clone() for t in step()]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = step()
        graph.replay()
        torch.cuda.synchronize()
        results[setting] = eager + [t.clone() for t in captured]
    assert all(torch.equal(a, b) for a, b in zip(results['0'], results['1']))


def test_torch_compile_without_graph_breaks(triton_backend):
    """Under torch.compile the kernels are custom ops: one graph, same output and gradients as eager. On the GPU
    with inductor in bf16; on CPU (interpreter) with aot_eager, which runs dynamo and AOT autograd on the ops'
    fake implementations, the parts that can break."""
    cuda = DEVICE == 'cuda'
    h, w, c = (20, 24, 64) if cuda else (5, 6, 32)
    qk, v, weight, bias = make_inputs(2 if cuda else 1, h, w, c, torch.bfloat16 if cuda else torch.float32)

    def fn(qk, v, weight, bias):
        return linear_attention(qk, v, (h, w), 2, weight, bias).float().square().sum()

    assert_one_graph_matching_eager(fn, (qk, v, weight, bias), 'inductor' if cuda else 'aot_eager')


def test_custom_op_registration(triton_backend):
    """torch.library.opcheck: schema, fake (meta) implementation against the real one, autograd registration."""
    qk, v, weight, bias = make_inputs(1, 3, 5, 16, torch.float32)
    args = [t.requires_grad_() for t in (qk, v, weight, bias)]
    results = torch.library.opcheck(linear_attention_op.forward_op, (*args, 3, 5, 2))
    assert set(results.values()) == {'SUCCESS'}, results
    # inductor checks the real outputs' strides against the fake ones (contiguous)
    _, stats = linear_attention_op.forward_op(qk, v, weight, bias, 3, 5, 2)
    grads = linear_attention_op.backward_op(torch.randn_like(v), qk, v, weight, stats, 3, 5, 2)
    assert all(g.is_contiguous() for g in grads)


def test_callers_rope_tables_give_the_same_results(triton_backend):
    """With RoPE tables the caller built (``rope``, the op that takes them as inputs: torch.compile builds them once
    per stage), the output and every gradient equal the op with its own tables, eager and under torch.compile; a
    table of the wrong dtype is refused."""
    from mlla_dense.kernels.linear_attention.op import linear_attention_with_tables_op
    from mlla_dense.kernels.linear_attention.rope import build_rope_tables, table_dtype
    qk, v, weight, bias = make_inputs(2, 5, 7, 32, torch.float32)
    grad = torch.randn_like(v)
    tables = build_rope_tables(5, 7, 32, v.device, table_dtype(v.dtype))
    own = run_kernel(qk, v, weight, bias, (5, 7), 2, grad)
    leaves = [t.detach().clone().requires_grad_() for t in (qk, v, weight, bias)]
    out = linear_attention(leaves[0], leaves[1], (5, 7), 2, *leaves[2:], rope=tables)
    given = out, torch.autograd.grad(out, leaves, grad)
    assert torch.equal(own[0], given[0]) and all(torch.equal(a, b) for a, b in zip(own[1], given[1]))
    with pytest.raises(ValueError, match='RoPE tables'):
        linear_attention(qk, v, (5, 7), 2, weight, bias, rope=tuple(t.half() for t in tables))

    def fn(qk, v, weight, bias):
        rope = build_rope_tables(5, 7, 32, v.device, table_dtype(v.dtype))
        return linear_attention(qk, v, (5, 7), 2, weight, bias, rope=rope).float().square().sum()

    assert_one_graph_matching_eager(fn, (qk, v, weight, bias), 'aot_eager' if DEVICE == 'cpu' else 'inductor')
    results = torch.library.opcheck(linear_attention_with_tables_op.forward_op,
                                    (*[t.requires_grad_() for t in (qk, v, weight, bias)], *tables, 5, 7, 2))
    assert set(results.values()) == {'SUCCESS'}, results
