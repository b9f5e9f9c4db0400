"""Elementwise steps of the MLLA block, each one Triton launch where PyTorch needs several: the SiLU gate and its
backward, the residual add with drop path and its backward, GELU with or without its backward, the cast of a
block's weights into one buffer, and casts of up to eight tensors of any layout in one launch (:func:`cast_each`).
The drop-path and GELU gradients can also leave the column partial sums of what they write (the gradient of the
bias of the product before them), which :func:`finish_column_sums` adds up: one launch for two bias gradients
instead of PyTorch's four (a memset and a reduction each). :func:`column_sums` takes the bias gradients of two
other gradients in one launch; ``traced_column_sums`` is its one-tensor form as an op that torch.compile traces.

They serve the MLLA model's hand-written backwards and weight casts, so they have no autograd of their own.
Triton on CUDA tensors, the reference (reference.py) otherwise; ``MLLA_DENSE_BACKEND`` overrides. Inputs are
(..., C) token tensors whose tokens share one stride; outputs are new contiguous tensors unless an output buffer
is given (cast_each: new tensors with their inputs' strides).
"""
from typing import List, Optional, Sequence, Tuple

import torch
import triton
from torch import Tensor

from ..backend import use_triton
from ..kernel_op import Plans, row_stride, traced_op
from ..launcher import Launch
from ..partial_sums import ArrivalCounters, chunking
from .block_matrix import BlockMatrix
from .kernels import (_cast_kernel, _column_sums_kernel, _drop_path_grad_kernel, _finish_column_sums_kernel,
                      _gelu_kernel, _pack_kernel, _residual_add_kernel, _silu_gate_backward_kernel, _silu_gate_kernel)
from .reference import (cast_each_reference, drop_path_grad_reference, gelu_reference, pack_reference,
                        residual_add_reference, silu_gate_backward_reference, silu_gate_reference)

TILE = 4096  # elements per program
PACK_BLOCK = 4096
CAST_BLOCK = 4096
CAST_SLOTS = 8  # tensors per launch of cast_each
CAST_ALIGN = 64  # elements: cast_each's outputs start 128-byte aligned (16-bit dtypes) in their buffer


class _RowsPlan:
    """One launch over (M, C) rows of ``kernel``, with each tensor's row stride (None: needs a copy)."""

    def __init__(self, kernel, tensors, **constexprs):
        self.c = tensors[0].shape[-1]
        self.m = tensors[0].numel() // max(self.c, 1)
        self.strides = tuple(row_stride(t) for t in tensors)
        if None in self.strides:
            raise ValueError(f'{kernel.__name__}: every input needs one token stride and contiguous channels, '
                             f'got shapes {[tuple(t.shape) for t in tensors]} and strides '
                             f'{[t.stride() for t in tensors]}')
        block_c = min(128, triton.next_power_of_2(self.c))
        block_m = max(1, TILE // block_c)
        self.row_blocks = triton.cdiv(self.m, block_m)
        self.launch = Launch(kernel, (self.row_blocks, triton.cdiv(self.c, block_c)),
                             BLOCK_M=block_m, BLOCK_C=block_c, **constexprs)


def _plans(kernel, **constexprs):
    return Plans(lambda *tensors: _RowsPlan(kernel, tensors, **constexprs))


_silu_gate_plans = _plans(_silu_gate_kernel)
_silu_gate_backward_plans = _plans(_silu_gate_backward_kernel)
_residual_add_plans = _plans(_residual_add_kernel, DROP_PATH=False)
_residual_drop_path_plans = _plans(_residual_add_kernel, DROP_PATH=True)
_drop_path_grad_plans = {sums: _plans(_drop_path_grad_kernel, COLUMN_SUMS=sums) for sums in (False, True)}
_gelu_plans = _plans(_gelu_kernel, WITH_GRAD=False, COLUMN_SUMS=False)
_gelu_grad_plans = {sums: _plans(_gelu_kernel, WITH_GRAD=True, COLUMN_SUMS=sums) for sums in (False, True)}
FINISH_BLOCK_C = 32  # columns per program of finish_column_sums (a program sums all rows of its columns)
FINISH_BLOCK_R = 64


def silu_gate(x: Tensor, g: Tensor) -> Tensor:
    """x * SiLU(g) (same shapes), in x's dtype."""
    if not use_triton(x):
        return silu_gate_reference(x, g)
    plan = _silu_gate_plans((x, g))
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    plan.launch(x, g, y, plan.m, plan.c, *plan.strides, plan.c)
    return y


def silu_gate_backward(dy: Tensor, x: Tensor, g: Tensor, dx: Tensor, dg: Tensor) -> None:
    """Writes the gradients of :func:`silu_gate`'s x and g into ``dx`` and ``dg`` (buffers of their shape)."""
    if not use_triton(x):
        grad_x, grad_g = silu_gate_backward_reference(dy, x, g)
        dx.copy_(grad_x)
        dg.copy_(grad_g)
        return
    plan = _silu_gate_backward_plans((dy, x, g, dx, dg))
    plan.launch(dy, x, g, dx, dg, plan.m, plan.c, *plan.strides)


def residual_add(res: Tensor, y: Tensor, keep: Optional[Tensor] = None, keep_prob: float = 1.0) -> Tensor:
    """res + y, or with ``keep`` (per sample 0. or 1., float32 (B,)) res + y.div(keep_prob) * keep (drop path);
    res and y are (B, N, C); the result has the dtype of ``res + y``."""
    dtype = torch.result_type(res, y)
    if not use_triton(res):
        return residual_add_reference(res, y, keep, keep_prob).to(dtype)
    out = torch.empty(res.shape, dtype=dtype, device=res.device)
    tokens = res.shape[1]
    if keep is None:
        plan = _residual_add_plans((res, y))
        plan.launch(res, y, res, out, plan.m, plan.c, tokens, 1.0, *plan.strides, plan.c)
    else:
        plan = _residual_drop_path_plans((res, y, keep))
        plan.launch(res, y, keep, out, plan.m, plan.c, tokens, keep_prob, *plan.strides[:2], plan.c)
    return out


def drop_path_grad(d: Tensor, keep: Tensor, keep_prob: float, dtype: torch.dtype, column_sums: bool = False):
    """The gradient of y in :func:`residual_add` with drop path, from the gradient ``d`` (B, N, C) of the sum, in
    ``dtype`` (y's); with ``column_sums`` (grad, partials): partials whose :func:`finish_column_sums` is grad's
    sum over tokens in float32."""
    if not use_triton(d):
        grad = drop_path_grad_reference(d, keep, keep_prob, dtype)
        return (grad, _reference_partials(grad)) if column_sums else grad
    out = torch.empty(d.shape, dtype=dtype, device=d.device)
    plan = _drop_path_grad_plans[column_sums]((d, keep, out))  # out: its dtype is the kernel's, not d's
    sums = _partials(plan, d.device) if column_sums else out
    plan.launch(d, keep, out, sums, plan.m, plan.c, d.shape[1], keep_prob, plan.strides[0], plan.c)
    return (out, sums) if column_sums else out


def _partials(plan, device) -> Tensor:
    return torch.empty((plan.row_blocks, plan.c), dtype=torch.float32, device=device)


def _reference_partials(grad: Tensor) -> Tensor:
    """One row of partials: the column sums themselves."""
    return grad.reshape(-1, grad.shape[-1]).sum(0, dtype=torch.float32, keepdim=True)


class _FinishPlan:
    def __init__(self, first: Tensor, second: Tensor, count: int):
        if any(p.dtype != torch.float32 or p.dim() != 2 or not p.is_contiguous() for p in (first, second)):
            raise ValueError(f'finish_column_sums needs contiguous float32 (rows, C) partials, got '
                             f'{[(p.dtype, tuple(p.shape), p.stride()) for p in (first, second)]}')
        grid = (triton.cdiv(max(first.shape[1], second.shape[1]), FINISH_BLOCK_C), count)
        self.launch = Launch(_finish_column_sums_kernel, grid, BLOCK_R=FINISH_BLOCK_R, BLOCK_C=FINISH_BLOCK_C)


_finish_plans = Plans(_FinishPlan)


def finish_column_sums(*partials: Tensor) -> Tuple[Tensor, ...]:
    """The column sums (float32 (C,)) of one or two contiguous (rows, C) float32 partials, each summed over its
    rows in order, in one launch."""
    if len(partials) not in (1, 2):
        raise ValueError(f'finish_column_sums takes one or two partials, got {len(partials)}')
    if not use_triton(partials[0]):
        return tuple(p.sum(0) for p in partials)
    first, second = partials[0], partials[-1]
    plan = _finish_plans((first, second), (len(partials),))
    outs = tuple(torch.empty(p.shape[1], dtype=torch.float32, device=p.device) for p in partials)
    plan.launch(first, outs[0], first.shape[0], first.shape[1], second, outs[-1], second.shape[0], second.shape[1])
    return outs


# column_sums' tile: 64 columns of 64 tokens per step, two programs per SM. 64 columns instead of 128 took MLLA-T's
# bias gradients from 1064 to 754 us of device time per forward+backward (H100, benchmarks/NOTES.md). Stages of
# software pipelining of a program's loop: 1, none (more: not yet timed).
COLUMN_SUMS_TILE = 4096
COLUMN_SUMS_BLOCK_C = 64
COLUMN_SUMS_PROGRAMS_PER_SM = 2
COLUMN_SUMS_STAGES = 1


class _ColumnSumsPlan:
    def __init__(self, a: Tensor, b: Tensor, count: int):
        self.c = (a.shape[-1], b.shape[-1])
        self.m = a.numel() // max(a.shape[-1], 1)
        self.strides = (row_stride(a), row_stride(b))
        if None in self.strides or b.numel() // max(b.shape[-1], 1) != self.m or a.dtype != b.dtype:
            raise ValueError(f'column_sums needs tensors of one dtype with one token stride, contiguous channels and '
                             f'the same number of tokens, got shapes {tuple(a.shape)}, {tuple(b.shape)}, strides '
                             f'{a.stride()}, {b.stride()} and dtypes {a.dtype}, {b.dtype}')
        block_c = min(COLUMN_SUMS_BLOCK_C, triton.next_power_of_2(max(self.c[:count])))
        self.a_blocks = triton.cdiv(self.c[0], block_c)
        blocks = self.a_blocks + (triton.cdiv(self.c[1], block_c) if count == 2 else 0)
        block_m = max(1, COLUMN_SUMS_TILE // block_c)
        programs, self.rows_per_program = chunking(self.m, blocks, a.device, COLUMN_SUMS_PROGRAMS_PER_SM, block_m)
        self.part_shape = (programs, blocks * block_c)
        self.counters = ArrivalCounters(blocks, a.device)
        self.launch = Launch(_column_sums_kernel, (programs, blocks), PAIR=count == 2, BLOCK_M=block_m,
                             BLOCK_C=block_c, BLOCK_R=max(1, min(32, triton.next_power_of_2(programs))),
                             STAGES=COLUMN_SUMS_STAGES)


_column_sums_plans = Plans(_ColumnSumsPlan)


def column_sums(*tensors: Tensor) -> Tuple[Tensor, ...]:
    """The float32 sums over tokens of one or two (..., C) tensors with the same tokens (the bias gradients of the
    products that made them), in one launch: each program sums a range of tokens, the last one to finish a column
    block adds their partials in order (deterministic)."""
    if len(tensors) not in (1, 2):
        raise ValueError(f'column_sums takes one or two tensors, got {len(tensors)}')
    if not use_triton(tensors[0]) or tensors[0].numel() == 0:
        return tuple(t.reshape(-1, t.shape[-1]).sum(0, dtype=torch.float32) for t in tensors)
    a, b = tensors[0], tensors[-1]
    plan = _column_sums_plans((a, b), (len(tensors),))
    outs = tuple(torch.empty(c, dtype=torch.float32, device=a.device) for c in plan.c[:len(tensors)])
    part = torch.empty(plan.part_shape, dtype=torch.float32, device=a.device)
    plan.launch(a, outs[0], plan.c[0], plan.strides[0], b, outs[-1], plan.c[1], plan.strides[1], part,
                plan.counters.get(), plan.m, plan.rows_per_program, plan.a_blocks)
    return outs


def _column_sums_of_one(x: Tensor) -> Tensor:
    """The float32 sums over the tokens of (..., C) ``x`` (copied first where its tokens share no one stride)."""
    return column_sums(x if row_stride(x) is not None else x.contiguous())[0]


# column_sums of one tensor as an op that torch.compile traces into (the compiled products' bias gradients,
# cast_products.py): one launch where Inductor splits the sum in two
traced_column_sums = traced_op('column_sums', _column_sums_of_one)


def gelu(a: Tensor) -> Tensor:
    """Exact GELU of ``a``, in its dtype."""
    if not use_triton(a):
        return gelu_reference(a)
    plan = _gelu_plans((a,))
    h = torch.empty(a.shape, dtype=a.dtype, device=a.device)
    plan.launch(a, a, h, h, h, plan.m, plan.c, plan.strides[0], plan.c, plan.c, plan.c)
    return h


def gelu_with_grad(a: Tensor, dh: Tensor, column_sums: bool = False):
    """(gelu(a), dh * gelu'(a)) in one pass: the MLP's recomputed activation and its input gradient; with
    ``column_sums`` also partials of the gradient's column sums (see :func:`drop_path_grad`)."""
    if not use_triton(a):
        h, da = gelu_reference(a, dh)
        return (h, da, _reference_partials(da)) if column_sums else (h, da)
    plan = _gelu_grad_plans[column_sums]((a, dh))
    h = torch.empty(a.shape, dtype=a.dtype, device=a.device)
    da = torch.empty(a.shape, dtype=a.dtype, device=a.device)
    sums = _partials(plan, a.device) if column_sums else da
    plan.launch(a, dh, h, da, sums, plan.m, plan.c, *plan.strides, plan.c, plan.c)
    return (h, da, sums) if column_sums else (h, da)


class _PackPlan:
    def __init__(self, pieces: Sequence, dtype: torch.dtype):
        rows, offset = [], 0
        for piece in pieces:
            if isinstance(piece, BlockMatrix):
                rows += piece.pieces(offset)
            else:
                rows.append((piece, piece.numel(), offset, piece.numel(), piece.numel()))
            offset += piece.numel()
        tensors = [block for block, *_ in rows if block is not None]
        if any(not t.is_contiguous() or t.dtype != tensors[0].dtype or t.device != tensors[0].device
               for t in tensors):
            raise ValueError('pack needs contiguous tensors of one dtype on one device')
        table = [(0 if block is None else block.data_ptr(), numel, start, max(1, row_length), row_stride)
                 for block, numel, start, row_length, row_stride in rows]
        programs = [(t, block) for t, (_, numel, *_) in enumerate(rows) for block in range(triton.cdiv(numel,
                                                                                                      PACK_BLOCK))]
        if any(numel >= 2 ** 31 for _, numel, *_ in rows):
            raise ValueError('pack handles pieces of fewer than 2^31 elements')
        device = tensors[0].device
        self.table = torch.tensor(table, dtype=torch.int64, device=device)
        self.programs = torch.tensor(programs or [(0, 0)], dtype=torch.int64, device=device)
        self.numel = offset
        self.piece_numels = [piece.numel() for piece in pieces]
        src = tensors[0].dtype
        self.launch = Launch(_pack_kernel, (max(1, len(programs)),),
                             SRC_DTYPE={torch.float32: triton.language.float32,
                                        torch.bfloat16: triton.language.bfloat16,
                                        torch.float16: triton.language.float16}[src], BLOCK=PACK_BLOCK)


_pack_plans = {}


def _piece_key(piece):
    return piece.key() if isinstance(piece, BlockMatrix) else (piece.data_ptr(), piece.numel(), piece.dtype)


def _pack(pieces: Sequence, dtype: torch.dtype):
    """(the packed buffer, its plan)."""
    key = tuple(_piece_key(p) for p in pieces) + (dtype,)
    plan = _pack_plans.get(key)
    if plan is None:
        if len(_pack_plans) >= 4096:
            _pack_plans.clear()
        plan = _pack_plans[key] = _PackPlan(pieces, dtype)
    out = torch.empty(plan.numel, dtype=dtype, device=plan.table.device)
    plan.launch(plan.table, plan.programs, out)
    return out, plan


def _uses_triton(pieces: Sequence) -> bool:
    return use_triton(pieces[0].tensors()[0] if isinstance(pieces[0], BlockMatrix) else pieces[0])


def pack(pieces: Sequence, dtype: torch.dtype) -> Tensor:
    """The pieces (contiguous tensors, one dtype, one device, or :class:`BlockMatrix` of such) flattened, cast to
    ``dtype`` and concatenated, in one launch (a block's product weights for its 16-bit products)."""
    if not _uses_triton(pieces):
        return pack_reference(pieces, dtype)
    return _pack(pieces, dtype)[0]


def pack_groups(groups: Sequence[Sequence], dtype: torch.dtype) -> List[Tensor]:
    """:func:`pack` of each group (the blocks' weights of a backbone), as views of one buffer that one launch
    fills for all the groups (the pieces' sizes come from the plan, not recomputed on each call)."""
    pieces = [p for group in groups for p in group]
    if not _uses_triton(pieces):
        packed, numels = pack_reference(pieces, dtype), [p.numel() for p in pieces]
    else:
        packed, plan = _pack(pieces, dtype)
        numels = plan.piece_numels
    sizes, start = [], 0
    for group in groups:
        sizes.append(sum(numels[start:start + len(group)]))
        start += len(group)
    return list(packed.split(sizes))


def is_dense(t: Tensor) -> bool:
    """Whether t's elements fill numel() consecutive memory slots, in any order of dimensions (contiguous,
    channels-last, a transpose of either)."""
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda pair: pair[1]):
        if size != 1:
            if stride != expected:
                return False
            expected *= size
    return True


class _CastPlan:
    def __init__(self, *args):
        *tensors, dtype = args
        if any(not is_dense(t) for t in tensors):
            raise ValueError('cast_each needs tensors whose elements are dense in memory, got strides '
                             f'{[t.stride() for t in tensors]} for shapes {[tuple(t.shape) for t in tensors]}')
        self.sizes = [t.numel() for t in tensors]
        self.views, self.numel = [], 0
        for t, n in zip(tensors, self.sizes):
            self.views.append((t.shape, t.stride(), self.numel))
            self.numel += triton.cdiv(n, CAST_ALIGN) * CAST_ALIGN
        self.groups = []
        for start in range(0, len(tensors), CAST_SLOTS):
            members = list(range(start, min(start + CAST_SLOTS, len(tensors))))
            largest = max(self.sizes[i] for i in members)
            grid = (len(members), max(1, triton.cdiv(largest, CAST_BLOCK)))
            self.groups.append((members, Launch(_cast_kernel, grid, BLOCK=CAST_BLOCK)))


_cast_plans = Plans(_CastPlan)


def cast_each(tensors: Sequence[Tensor], dtype: torch.dtype) -> List[Tensor]:
    """``[t.to(dtype) for t in tensors]`` (shapes and strides kept; tensors dense in memory, of any dtypes) as
    views of one new buffer, with one launch per eight tensors instead of one each: the casts of a stem's or a
    patch merging's weights under autocast, and of their gradients back."""
    if not use_triton(tensors[0]):
        return cast_each_reference(tensors, dtype)
    plan = _cast_plans(tensors, (dtype,))
    buffer = torch.empty(plan.numel, dtype=dtype, device=tensors[0].device)
    outs = [buffer.as_strided(shape, stride, offset) for shape, stride, offset in plan.views]
    for members, launch in plan.groups:
        args = []
        for i in members:
            args += (tensors[i], outs[i], plan.sizes[i])
        args += (tensors[members[0]], outs[members[0]], 0) * (CAST_SLOTS - len(members))
        launch(*args)
    return outs


__all__ = ['cast_each', 'is_dense', 'silu_gate', 'silu_gate_backward', 'residual_add', 'drop_path_grad', 'gelu',
           'gelu_with_grad', 'finish_column_sums', 'column_sums', 'traced_column_sums', 'pack', 'pack_groups']
