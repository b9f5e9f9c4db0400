"""SS2D's layout kernels (kernels/grid_sequences): token map to row and column sequences and back, against the
PyTorch references, and the references against the definition written with explicit indices.

CPU: through the Triton interpreter on odd shapes (tiles cut by the map's edges and the channel count), a
strided input included. GPU (marker `gpu`): stage 1 of a 2x3x800x1344 input at VMamba-S's width (D = 192;
VMamba-T's is 96).
"""
import pytest
import torch

from mlla_dense.kernels.grid_sequences import (grid_to_sequences, grid_to_sequences_reference, sequences_to_grid,
                                               sequences_to_grid_reference)

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'


@pytest.fixture(autouse=True)
def triton_backend(use_backend):
    use_backend('triton')


def token_order(h, w):
    """Token index (row-major on the map) of each position of the row sequence and of the column sequence."""
    rows = [r * w + c for r in range(h) for c in range(w)]
    columns = [r * w + c for c in range(w) for r in range(h)]
    return torch.tensor(rows), torch.tensor(columns)


def sequences_by_definition(u):
    b, h, w, d = u.shape
    flat = u.reshape(b, h * w, d)
    rows, columns = token_order(h, w)
    return torch.stack([flat[:, rows].transpose(1, 2), flat[:, columns].transpose(1, 2)], 1)


def grid_by_definition(ys, h, w):
    """Sum over paths per token in float64 (K = 4: paths 0, 2 read the rows, 1, 3 the columns)."""
    b, k, d, _ = ys.shape
    rows, columns = token_order(h, w)
    out = torch.zeros(b, h * w, d, dtype=torch.float64)
    for path in range(k):
        order = rows if path % 2 == 0 else columns
        out[:, order] += ys[:, path].double().cpu().transpose(1, 2)
    return out.view(b, h, w, d)


def values(shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen).to(DEVICE, dtype)


SHAPES = [(1, 5, 37, 40), (2, 19, 3, 8), (2, 17, 16, 33)]


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_grid_to_sequences(shape, dtype):
    u = values(shape, dtype)
    xs = grid_to_sequences(u)
    assert xs.shape == (shape[0], 2, shape[3], shape[1] * shape[2]) and xs.dtype == dtype
    assert torch.equal(xs.cpu(), sequences_by_definition(u.cpu()))
    assert torch.equal(grid_to_sequences_reference(u).cpu(), xs.cpu())


def test_grid_to_sequences_strided_input():
    """A (B, H, W, D) view of a wider buffer (the block's channel slices) is read in place."""
    wide = values((2, 7, 9, 24), torch.float32)
    u = wide[..., 4:20]
    assert torch.equal(grid_to_sequences(u).cpu(), sequences_by_definition(u.cpu()))


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('k', [2, 4])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_sequences_to_grid(shape, k, dtype):
    b, h, w, d = shape
    ys = values((b, k, d, h * w), dtype, seed=1)
    y = sequences_to_grid(ys, h, w)
    assert y.shape == shape and y.dtype == dtype
    # the same roundings as the reference (the interpreter truncates to bfloat16 where GPUs round: a step per
    # rounding, up to three with K = 4);
    # the reference within a rounding step of the exact sum
    reference = sequences_to_grid_reference(ys, h, w)
    if dtype == torch.float32 or DEVICE == 'cuda':
        assert torch.equal(y.cpu(), reference.cpu())
    else:
        torch.testing.assert_close(y.cpu(), reference.cpu(), rtol=4e-2, atol=4e-2)
    step = 1e-6 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(y.double().cpu(), grid_by_definition(ys, h, w), rtol=step, atol=step * 4)


def test_sequences_to_grid_refuses_wrong_shapes():
    with pytest.raises(ValueError, match='expected'):
        sequences_to_grid(values((1, 3, 4, 20), torch.float32), 4, 5)
    with pytest.raises(ValueError, match='expected'):
        sequences_to_grid(values((1, 2, 4, 21), torch.float32), 4, 5)


@pytest.mark.gpu
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_gpu_stage1(dtype):
    b, h, w, d = 2, 200, 336, 192
    u = values((b, h, w, d), dtype)
    assert torch.equal(grid_to_sequences(u), grid_to_sequences_reference(u))
    ys = values((b, 4, d, h * w), torch.float32, seed=1)
    assert torch.equal(sequences_to_grid(ys, h, w), sequences_to_grid_reference(ys, h, w))
    d_xs = values((b, 2, d, h * w), dtype, seed=2)
    assert torch.equal(sequences_to_grid(d_xs, h, w), sequences_to_grid_reference(d_xs, h, w))
