"""The one template of every Triton op: eager autograd, torch.compile registration and launch plans, written once.

An op supplies two annotated functions (they define the schema of its two ``torch.library.triton_op``s):

- ``forward(*inputs) -> (output, *residuals)``: launches the forward kernels; the residuals are tensors only the
  backward reads (statistics, chunk states);
- ``backward(grad_output, *saved, *options) -> grads``: ``saved`` are the inputs named in ``save`` followed by
  the residuals, ``options`` the non-tensor inputs named in ``options``; it returns the gradients of the inputs
  named in ``grads_for``, in that order.

:class:`KernelOp` makes of them:

- in eager mode, one autograd.Function shared by all ops (no dispatcher on the way, no custom-op checks): the
  forward runs ``forward`` directly and saves what ``backward`` needs; without gradients the Function is skipped;
- under torch.compile, ``mlla_dense::<name>_fwd`` / ``_bwd`` as ``triton_op``s with their autograd registered:
  Inductor traces into them and launches the kernels from its own generated code (the launches inside go
  through ``wrap_triton``, see launcher.py). Their fake implementations are the functions themselves, run on
  fake tensors (allocations happen, launches do not).

:func:`traced_op` registers a function without autograd the same way, for kernels launched only inside a
backward. :class:`Plans` keeps an op's launch plan per input layout, so grids, tile sizes and compiled binaries
are worked out once per shape instead of on every call.
"""
import functools
import inspect
from typing import Callable, Sequence

import torch

from . import launcher


def _traced(fn: Callable) -> Callable:
    """``fn`` with its launches routed through wrap_triton, keeping its signature (the op's schema), on dense
    tensors (:func:`_dense`)."""
    @functools.wraps(fn)
    def body(*args):
        with launcher.traced_launches():
            return fn(*(_dense(a) for a in args))
    return body


def _dense(value):
    """A tensor input as a traced op may read it: itself where it has no gaps (non-overlapping and dense), else a
    contiguous copy. The kernels get strides as numbers read while tracing, but Inductor keeps only the stride
    order of a user kernel's tensor arguments and may lay a buffer out anew; for a tensor without gaps the order
    fixes the strides, for a view with gaps (a slice of a larger buffer) it does not."""
    if isinstance(value, torch.Tensor) and _has_gaps(value):
        return value.contiguous()
    return value


def _has_gaps(t: torch.Tensor) -> bool:
    """Whether no order of ``t``'s dims makes it contiguous (dims of size 1 aside)."""
    expected = 1
    for stride, size in sorted((st, s) for s, st in zip(t.shape, t.stride()) if s != 1):
        if stride != expected:
            return True
        expected *= size
    return False


class _EagerFunction(torch.autograd.Function):
    """Autograd of any KernelOp in eager mode; ``op`` says what to run and save."""

    @staticmethod
    def forward(ctx, op, *inputs):
        output, *residuals = op.forward(*inputs)
        ctx.op = op
        ctx.options = [inputs[i] for i in op.option_index]
        ctx.save_for_backward(*[inputs[i] for i in op.save_index], *residuals)
        return output

    @staticmethod
    def backward(ctx, grad):
        op = ctx.op
        return (None, *op.place_grads(op.backward(grad, *ctx.saved_tensors, *ctx.options)))


class KernelOp:
    """A Triton op made of a ``forward`` and a ``backward`` (module doc); call it with the forward's inputs."""

    every = []  # all ops, for tools that look at them together (tools/profile_backbone.py)

    def __init__(self, name: str, forward: Callable, backward: Callable, save: Sequence[str],
                 grads_for: Sequence[str], options: Sequence[str] = ()):
        params = list(inspect.signature(forward).parameters)
        for names in (save, grads_for, options):
            unknown = set(names) - set(params)
            if unknown:
                raise ValueError(f'{name}: {sorted(unknown)} are not inputs of its forward {params}')
        self.name = name
        self.forward = forward
        self.backward = backward
        self.num_inputs = len(params)
        self.save_index = [params.index(n) for n in save]
        self.option_index = [params.index(n) for n in options]
        self.grad_index = [params.index(n) for n in grads_for]
        self.forward_op = torch.library.triton_op(f'mlla_dense::{name}_fwd', _traced(forward), mutates_args=())
        self.backward_op = torch.library.triton_op(f'mlla_dense::{name}_bwd', _traced(backward), mutates_args=())
        self.forward_op.register_autograd(self._compiled_backward, setup_context=self._setup_context)
        KernelOp.every.append(self)

    def __call__(self, *inputs):
        if torch.compiler.is_compiling():
            return self.forward_op(*inputs)[0]
        if torch.is_grad_enabled():
            return _EagerFunction.apply(self, *inputs)
        return self.forward(*inputs)[0]

    def place_grads(self, grads) -> list:
        """The backward's gradients at the positions of their inputs (None for the others)."""
        placed = [None] * self.num_inputs
        for index, grad in zip(self.grad_index, grads):
            placed[index] = grad
        return placed

    def _setup_context(self, ctx, inputs, output):
        ctx.options = [inputs[i] for i in self.option_index]
        ctx.save_for_backward(*[inputs[i] for i in self.save_index], *output[1:])

    def _compiled_backward(self, ctx, grad, *residual_grads):
        return tuple(self.place_grads(self.backward_op(grad, *ctx.saved_tensors, *ctx.options)))


def traced_op(name: str, fn: Callable):
    """``fn`` (annotated: its signature is the schema) as the triton_op ``mlla_dense::<name>``, without autograd:
    for kernels launched only inside a backward, which torch.compile then traces into as into a KernelOp."""
    return torch.library.triton_op(f'mlla_dense::{name}', _traced(fn), mutates_args=())


def layout(*tensors) -> tuple:
    """What decides how kernels specialize on these tensors: the device (of the first: an op's tensors share
    one), shapes, strides, dtypes and whether each data pointer is 16-byte aligned (Triton assumes alignment it
    has seen). A flat tuple built in a loop: this runs before every launch, on the host's critical path."""
    key = [tensors[0].get_device()]
    for t in tensors:
        key += (t.shape, t.stride(), t.dtype, not t.data_ptr() & 15)
    return tuple(key)


class Plans:
    """An op's launch plans, one per input layout: ``plans(tensors, options)`` builds ``build(*tensors,
    *options)`` the first time a layout comes, and returns the same plan after. While traced (fake tensors, no
    data pointers) the plan is built afresh, from the values of symbolic sizes (:class:`_SizesAsNumbers`), and
    not kept."""

    max_plans = 4096  # a bound for programs that see endless shapes; plans are cheap to rebuild
    every = []

    def __init__(self, build: Callable):
        self.build = build
        self.cache = {}
        Plans.every.append(self)

    def __call__(self, tensors: Sequence[torch.Tensor], options: tuple = ()):
        if launcher.is_traced():
            return self.build(*(_SizesAsNumbers(t) for t in tensors), *(_number(o) for o in options))
        key = (layout(*tensors), options)
        plan = self.cache.get(key)
        if plan is None:
            if len(self.cache) >= self.max_plans:
                self.cache.clear()
            plan = self.cache[key] = self.build(*tensors, *options)
        return plan


def _number(value):
    """A symbolic size (torch.compile tracing with dynamic shapes) as its value, guarded: the graph then holds for
    that value only."""
    if isinstance(value, torch.SymInt):
        from torch.fx.experimental.symbolic_shapes import guard_int
        return guard_int(value)
    return value


class _SizesAsNumbers:
    """A traced tensor as a launch plan reads it: sizes and strides as numbers (:func:`_number`), everything else
    the tensor's. A plan works tiles, grids and chunk counts out of its sizes; on symbolic sizes each of those
    steps is a guard on nested floor divisions of the image size, and tracing a backbone took minutes instead of
    seconds (benchmarks/NOTES.md). With numbers, a compiled graph holds for the sizes it was traced at."""

    def __init__(self, t: torch.Tensor):
        self._tensor = t
        self.shape = torch.Size(_number(s) for s in t.shape)
        self._strides = tuple(_number(s) for s in t.stride())

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def stride(self, dim=None):
        return self._strides if dim is None else self._strides[dim]

    def numel(self) -> int:
        return self.shape.numel()

    def __getattr__(self, name):
        return getattr(self._tensor, name)


def row_stride(t: torch.Tensor):
    """The stride between consecutive tokens of ``t`` (..., C) read as (tokens, C) rows with contiguous channels,
    or None where its layout has no single such stride (a copy is needed then)."""
    if t.stride(-1) != 1 and t.shape[-1] != 1:
        return None
    stride = expected = None
    for size, step in zip(reversed(t.shape[:-1]), reversed(t.stride()[:-1])):
        if size == 1:
            continue
        if expected is not None and step != expected:
            return None
        stride = step if stride is None else stride
        expected = step * size
    return t.shape[-1] if stride is None else stride


def clear_plans():
    """Forget every op's plans (after changing a TUNING table, so that new launches use it)."""
    for plans in Plans.every:
        plans.cache.clear()
