"""Launch plans are shared exactly by calls whose tensors specialize the kernels the same way."""
import torch

from mlla_dense.kernels.kernel_op import Plans, layout


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
