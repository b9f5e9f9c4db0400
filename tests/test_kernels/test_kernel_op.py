"""Launch plans are shared exactly by calls whose tensors specialize the kernels the same way; traced op bodies
read tensors whose strides Inductor cannot change."""
import torch

from mlla_dense.kernels.kernel_op import Plans, _traced, layout


def test_plans_per_layout():
    built = []
    plans = Plans(lambda *args: built.append(args) or len(built))
    x = torch.zeros(2, 8, 16)
    assert plans((x, x[0]), (3,)) == plans((x.clone(), x[1]), (3,)) == 1  # same shapes, strides, dtypes
    variants = [((x, x[0]), (4,)),                                          # another option
                ((x.transpose(1, 2), x[0]), (3,)),                          # other strides
                ((x.double(), x[0]), (3,)),                                 # another dtype
                ((x[:, :7], x[0]), (3,)),                                   # another shape
                ((x, torch.zeros(129)[1:].view(8, 16)), (3,))]              # a pointer off 16-byte alignment
    assert [plans(tensors, options) for tensors, options in variants] == [2, 3, 4, 5, 6]
    assert len(built) == 6


def test_layout_sees_alignment_of_every_tensor():
    x = torch.zeros(64)
    aligned, offset = x[:16], x[1:17]  # 4-byte float offset: not 16-byte aligned
    assert layout(x, aligned) != layout(x, offset)
    assert layout(x, aligned) == layout(x.clone(), x[4:20])


def test_traced_plans_see_numbers_and_guard_them():
    """While torch.compile traces with symbolic sizes, a plan is built from their values (each size guarded), so
    working out tiles and chunk counts adds no guards on derived expressions; other tensor properties pass
    through."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

    from mlla_dense.kernels import launcher
    shape_env = ShapeEnv()
    mode = FakeTensorMode(shape_env=shape_env)
    context = StatelessSymbolicContext(dynamic_sizes=[DimDynamic.STATIC, DimDynamic.DYNAMIC, DimDynamic.STATIC])
    x = mode.from_tensor(torch.randn(2, 3000, 64), symbolic_context=context)
    assert isinstance(x.shape[1], torch.SymInt)
    seen = []
    plans = Plans(lambda t, n: seen.append((tuple(t.shape), t.stride(), t.stride(1), t.size(1), t.numel(), n,
                                            t.dtype, t.dim())))
    with launcher.traced_launches():
        plans((x,), (x.shape[1] // 3,))
    shape, strides, row, size, numel, n, dtype, dim = seen[0]
    assert (shape, strides, row, size, numel, n) == ((2, 3000, 64), (192000, 64, 1), 64, 3000, 384000, 1000)
    assert all(type(v) is int for v in (*shape, *strides, row, size, numel, n))
    assert (dtype, dim) == (torch.float32, 3)
    assert shape_env.guards  # the values hold as guards: other sizes trace again
    assert not plans.cache  # traced plans are not kept


def test_traced_bodies_read_tensors_without_gaps():
    """Inductor keeps only the stride order of a traced kernel's tensor arguments, while the kernels read the
    strides traced: a slice with gaps is copied first; tensors any dim order makes contiguous pass as they are."""
    seen = []

    def body(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor, n: int) -> torch.Tensor:
        seen.extend([a, b, c, d, n])
        return a

    base = torch.randn(2, 8, 5)
    sliced, transposed, single, expanded = base[:, 2:4], base.transpose(1, 2), base[:, 3:4], base[:1].expand(3, 8, 5)
    _traced(body)(sliced, transposed, single, expanded, 7)
    assert seen[0] is not sliced and seen[0].is_contiguous() and torch.equal(seen[0], sliced)
    assert seen[1] is transposed and seen[4] == 7
    assert seen[2] is not single and torch.equal(seen[2], single)   # (2, 1, 5) with batch stride 40: a gap
    assert seen[3] is not expanded and seen[3].is_contiguous()     # stride 0: overlapping
