"""Triton kernels of the elementwise steps between an MLLA block's larger ops, over (tokens, C) rows with their
own row strides. Each rounds where the PyTorch ops it replaces round (reference.py), so their outputs are the
same numbers, with one launch instead of several."""
import triton
import triton.language as tl

from ..activations import gelu, gelu_grad, silu, silu_grad
from ..partial_sums import last_to_arrive


@triton.jit
def _tile(M, C, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (rows < M)[:, None] & (cols < C)[None, :]
    return rows, rows.to(tl.int64)[:, None], cols[None, :], mask


@triton.jit
def _silu_gate_kernel(x_ptr, g_ptr, y_ptr, M, C, s_x, s_g, s_y, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """y = x * silu(g), silu(g) rounded to g's dtype first (as F.silu's output is)."""
    _, r, c, mask = _tile(M, C, BLOCK_M, BLOCK_C)
    x = tl.load(x_ptr + r * s_x + c, mask=mask, other=0.).to(tl.float32)
    g = tl.load(g_ptr + r * s_g + c, mask=mask, other=0.).to(tl.float32)
    s = silu(g).to(g_ptr.dtype.element_ty).to(tl.float32)
    tl.store(y_ptr + r * s_y + c, (x * s).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _silu_gate_backward_kernel(dy_ptr, x_ptr, g_ptr, dx_ptr, dg_ptr, M, C, s_dy, s_x, s_g, s_dx, s_dg,
                               BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """dx = dy * silu(g) (silu rounded), dg = silu'(g) * (dy * x rounded)."""
    _, r, c, mask = _tile(M, C, BLOCK_M, BLOCK_C)
    dy = tl.load(dy_ptr + r * s_dy + c, mask=mask, other=0.).to(tl.float32)
    x = tl.load(x_ptr + r * s_x + c, mask=mask, other=0.).to(tl.float32)
    g = tl.load(g_ptr + r * s_g + c, mask=mask, other=0.).to(tl.float32)
    s = silu(g).to(g_ptr.dtype.element_ty).to(tl.float32)
    dyx = (dy * x).to(dg_ptr.dtype.element_ty).to(tl.float32)
    tl.store(dx_ptr + r * s_dx + c, (dy * s).to(dx_ptr.dtype.element_ty), mask=mask)
    tl.store(dg_ptr + r * s_dg + c, (dyx * silu_grad(g)).to(dg_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _residual_add_kernel(res_ptr, y_ptr, keep_ptr, out_ptr, M, C, TOKENS, keep_prob, s_res, s_y, s_out,
                         DROP_PATH: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """out = res + y, or with DROP_PATH res + (y / keep_prob, rounded to y's dtype) * keep[sample] (mmcv's
    DropPath: ``x.div(keep_prob) * mask``); samples are TOKENS rows each."""
    rows, r, c, mask = _tile(M, C, BLOCK_M, BLOCK_C)
    res = tl.load(res_ptr + r * s_res + c, mask=mask, other=0.).to(tl.float32)
    y = tl.load(y_ptr + r * s_y + c, mask=mask, other=0.).to(tl.float32)
    if DROP_PATH:
        keep = tl.load(keep_ptr + rows // TOKENS, mask=rows < M, other=0.)
        scaled = tl.math.div_rn(y, tl.cast(keep_prob, tl.float32))
        y = scaled.to(y_ptr.dtype.element_ty).to(tl.float32) * keep[:, None]
    tl.store(out_ptr + r * s_out + c, (res + y).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _column_partial_sums(sums_ptr, values, mask, C, BLOCK_C: tl.constexpr):
    """Row pid(0) of the (row blocks, C) float32 partials: the column sums of this program's tile of ``values``
    (the values as stored, i.e. rounded to the output's dtype)."""
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    part = tl.sum(tl.where(mask, values.to(tl.float32), 0.), axis=0)
    tl.store(sums_ptr + tl.program_id(0).to(tl.int64) * C + cols, part, mask=cols < C)


@triton.jit
def _drop_path_grad_kernel(d_ptr, keep_ptr, out_ptr, sums_ptr, M, C, TOKENS, keep_prob, s_d, s_out,
                           COLUMN_SUMS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """The gradient that reaches y through ``res + drop_path(y)``: d cast to y's dtype, times keep[sample],
    divided by keep_prob (the backward of mmcv's ``x.div(keep_prob) * mask``); with COLUMN_SUMS also its
    column partial sums (the gradient of the bias of the product that made y)."""
    rows, r, c, mask = _tile(M, C, BLOCK_M, BLOCK_C)
    d = tl.load(d_ptr + r * s_d + c, mask=mask, other=0.).to(out_ptr.dtype.element_ty).to(tl.float32)
    keep = tl.load(keep_ptr + rows // TOKENS, mask=rows < M, other=0.)
    grad = tl.math.div_rn(d * keep[:, None], tl.cast(keep_prob, tl.float32)).to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + r * s_out + c, grad, mask=mask)
    if COLUMN_SUMS:
        _column_partial_sums(sums_ptr, grad, mask, C, BLOCK_C)


@triton.jit
def _gelu_kernel(a_ptr, dh_ptr, h_ptr, da_ptr, sums_ptr, M, C, s_a, s_dh, s_h, s_da, WITH_GRAD: tl.constexpr,
                 COLUMN_SUMS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """h = gelu(a); WITH_GRAD also da = dh * gelu'(a) (F.gelu and its backward, in one pass over a), and with
    COLUMN_SUMS da's column partial sums (the gradient of the bias of the product that made a)."""
    _, r, c, mask = _tile(M, C, BLOCK_M, BLOCK_C)
    a = tl.load(a_ptr + r * s_a + c, mask=mask, other=0.).to(tl.float32)
    tl.store(h_ptr + r * s_h + c, gelu(a).to(h_ptr.dtype.element_ty), mask=mask)
    if WITH_GRAD:
        dh = tl.load(dh_ptr + r * s_dh + c, mask=mask, other=0.).to(tl.float32)
        da = (dh * gelu_grad(a)).to(da_ptr.dtype.element_ty)
        tl.store(da_ptr + r * s_da + c, da, mask=mask)
        if COLUMN_SUMS:
            _column_partial_sums(sums_ptr, da, mask, C, BLOCK_C)


@triton.jit
def _finish_column_sums_kernel(part0_ptr, out0_ptr, rows0, c0, part1_ptr, out1_ptr, rows1, c1,
                               BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """Program (column block, which): the columns of partials ``which`` (0 or 1; (rows, c) float32) summed over
    their rows in row order, into its float32 output. Two partial buffers in one launch."""
    which = tl.program_id(1)
    part_ptr = tl.where(which == 0, part0_ptr, part1_ptr)
    out_ptr = tl.where(which == 0, out0_ptr, out1_ptr)
    rows = tl.where(which == 0, rows0, rows1)
    c = tl.where(which == 0, c0, c1)
    cols = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    valid = cols < c
    acc = tl.zeros((BLOCK_C,), tl.float32)
    for r0 in range(0, rows, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)
        mask = (r < rows)[:, None] & valid[None, :]
        acc += tl.sum(tl.load(part_ptr + r.to(tl.int64)[:, None] * c + cols[None, :], mask=mask, other=0.), axis=0)
    tl.store(out_ptr + cols, acc, mask=valid)


@triton.jit
def _column_sums_kernel(a_ptr, out_a_ptr, c_a, s_a, b_ptr, out_b_ptr, c_b, s_b, part_ptr, counter_ptr, M,
                        ROWS_PER_PROGRAM, A_BLOCKS, PAIR: tl.constexpr, BLOCK_M: tl.constexpr,
                        BLOCK_C: tl.constexpr, BLOCK_R: tl.constexpr, STAGES: tl.constexpr):
    """Program (p, j): column block j (a's first A_BLOCKS, then b's with ``PAIR``) summed over rows
    p * ROWS_PER_PROGRAM.. of its tensor, stored as row p of the (programs, blocks * BLOCK_C) float32 partials; the
    last program of block j to arrive sums its column of partials in row order into the float32 output. Without
    ``PAIR`` nothing reads b or writes out_b (traced by torch.compile, an argument written that aliases out_a would
    make Inductor copy it)."""
    p = tl.program_id(0)
    j = tl.program_id(1)
    lane = tl.arange(0, BLOCK_C)
    if PAIR:
        in_b = j >= A_BLOCKS
        x_ptr = tl.where(in_b, b_ptr, a_ptr)
        out_ptr = tl.where(in_b, out_b_ptr, out_a_ptr)
        c = tl.where(in_b, c_b, c_a)
        stride = tl.where(in_b, s_b, s_a)
        cols = (j - tl.where(in_b, A_BLOCKS, 0)) * BLOCK_C + lane
    else:
        x_ptr, out_ptr, c, stride = a_ptr, out_a_ptr, c_a, s_a
        cols = j * BLOCK_C + lane
    valid = cols < c
    acc = tl.zeros((BLOCK_M, BLOCK_C), tl.float32)
    start = p * ROWS_PER_PROGRAM
    end = tl.minimum(start + ROWS_PER_PROGRAM, M)
    for r0 in tl.range(start, end, BLOCK_M, num_stages=STAGES):
        rows = r0 + tl.arange(0, BLOCK_M)
        mask = (rows < end)[:, None] & valid[None, :]
        acc += tl.load(x_ptr + rows.to(tl.int64)[:, None] * stride + cols[None, :], mask=mask, other=0.).to(
            tl.float32)
    width = tl.num_programs(1) * BLOCK_C
    tl.store(part_ptr + p.to(tl.int64) * width + j * BLOCK_C + lane, tl.sum(acc, axis=0))
    programs = tl.num_programs(0)
    if last_to_arrive(counter_ptr + j, programs):
        total = tl.zeros((BLOCK_C,), tl.float32)
        for q0 in range(0, programs, BLOCK_R):
            q = q0 + tl.arange(0, BLOCK_R)
            partials = tl.load(part_ptr + q.to(tl.int64)[:, None] * width + j * BLOCK_C + lane[None, :],
                               mask=(q < programs)[:, None], other=0., cache_modifier='.cg')
            total += tl.sum(partials, axis=0)
        tl.store(out_ptr + cols, total, mask=valid)


@triton.jit
def _pack_kernel(table_ptr, programs_ptr, out_ptr, SRC_DTYPE: tl.constexpr, BLOCK: tl.constexpr):
    """Program p: row t = programs[2p] of the int64 table, elements programs[2p + 1] * BLOCK.. of that piece,
    whose (address, numel, offset, row length, row stride) are row t, cast to out's dtype: element i goes to
    offset + (i // row length) * row stride + i % row length of out (offset + i for a plain piece, whose row
    length is its numel). Address 0 writes zeros. Only blocks that hold elements get a program."""
    p = tl.program_id(0)
    t = tl.load(programs_ptr + 2 * p)
    block = tl.load(programs_ptr + 2 * p + 1)
    address = tl.load(table_ptr + 5 * t)
    src = address.to(tl.pointer_type(SRC_DTYPE))
    numel = tl.load(table_ptr + 5 * t + 1)
    offset = tl.load(table_ptr + 5 * t + 2)
    row_length = tl.load(table_ptr + 5 * t + 3)
    row_stride = tl.load(table_ptr + 5 * t + 4)
    idx = block * BLOCK + tl.arange(0, BLOCK)
    mask = idx < numel
    value = tl.load(src + idx, mask=mask & (address != 0), other=0.0).to(out_ptr.dtype.element_ty)
    if row_length == numel:
        tl.store(out_ptr + offset + idx, value, mask=mask)
    else:  # a block of a BlockMatrix: pieces are far below 2^31 elements, so 32-bit division suffices
        i32 = idx.to(tl.int32)
        length = row_length.to(tl.int32)
        tl.store(out_ptr + offset + (i32 // length).to(tl.int64) * row_stride + i32 % length, value, mask=mask)


@triton.jit
def _cast_slot(src_ptr, dst_ptr, numel, BLOCK: tl.constexpr):
    idx = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < numel
    tl.store(dst_ptr + idx, tl.load(src_ptr + idx, mask=mask).to(dst_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _cast_kernel(s0, d0, n0, s1, d1, n1, s2, d2, n2, s3, d3, n3, s4, d4, n4, s5, d5, n5, s6, d6, n6, s7, d7, n7,
                 BLOCK: tl.constexpr):
    """Program (t, block): elements block * BLOCK.. of source t (numel n_t, in memory order) cast into
    destination t; up to eight tensors of any sizes and dtypes per launch (pointers as arguments: no table to
    upload, so new tensors on every call cost nothing more)."""
    t = tl.program_id(0)
    if t == 0:
        _cast_slot(s0, d0, n0, BLOCK)
    elif t == 1:
        _cast_slot(s1, d1, n1, BLOCK)
    elif t == 2:
        _cast_slot(s2, d2, n2, BLOCK)
    elif t == 3:
        _cast_slot(s3, d3, n3, BLOCK)
    elif t == 4:
        _cast_slot(s4, d4, n4, BLOCK)
    elif t == 5:
        _cast_slot(s5, d5, n5, BLOCK)
    elif t == 6:
        _cast_slot(s6, d6, n6, BLOCK)
    else:
        _cast_slot(s7, d7, n7, BLOCK)
