"""CUDA graphs of a backbone's training forward and backward, for steps the host cannot keep up with.

An eager MLLA-T forward+backward launches ~1,500 kernels; on the H100 machine the host needs ~170 ms for them
while the device needs ~25 ms (benchmarks/NOTES.md), so a detector's training step waits on Python. Replaying
one captured forward graph and one backward graph moves that work off the host. The device runs the same
kernels in the same order, so the results are those of the eager model.

What keeps a replay exact:
- one capture per input signature (shape, dtype, autocast dtype, which parameters train, which modules are in
  training mode, where the parameters live), taken after two eager warm-up passes on the actual input
  (Triton compiles, cuBLAS chooses); the BatchNorm statistics the warm-ups moved are put back;
- outputs and parameter gradients are copied out of the graph's memory, so a later replay never overwrites a
  tensor the caller holds (gradient accumulation over several backwards stays right);
- the captures of one module share one memory pool (the activations of the largest signature, not the sum),
  which is safe because replays are serialized: a forward while a replay still awaits its backward runs
  eagerly (a replay would overwrite the activations that backward needs);
- inputs that need their own gradient, calls without gradients (inference), CPU tensors and signatures past
  ``max_signatures`` run eagerly. Each signature keeps its own input, output and gradient buffers.
Random numbers (drop path) come from the default CUDA generator, which advances on every replay.

The captures differentiate with respect to aliases of the parameters (``p.view_as(p)``, made inside the
capture and passed in with ``torch.func.functional_call``), never the parameters themselves: the parameters'
gradient accumulators may live on another stream (DistributedDataParallel creates and keeps them on the
default stream), and the autograd engine would make that stream wait on the capturing one, which CUDA refuses.
"""
import warnings
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.func import functional_call

from mlla_dense.kernels.linear_attention.rope import cached_tables


class _Capture:
    """The forward and backward graphs of one signature, with their static input, outputs and gradients."""

    def __init__(self, module: nn.Module, names: List[str], x: torch.Tensor, pool: tuple):
        self.input = x.detach().clone()
        saved_buffers = [b.detach().clone() for b in module.buffers()]
        autocast = torch.autocast('cuda', dtype=torch.get_autocast_dtype('cuda'),
                                  enabled=torch.is_autocast_enabled('cuda'), cache_enabled=False)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), autocast:
            for _ in range(2):
                _warm_up(module, names, self.input)
        torch.cuda.current_stream().wait_stream(side)
        self.forward_graph, self.backward_graph = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        with autocast, torch.cuda.graph(self.forward_graph, pool=pool):
            aliases, self.outputs = _aliased_forward(module, names, self.input)
        self.grad_outputs = tuple(torch.empty_like(o) for o in self.outputs)
        with torch.cuda.graph(self.backward_graph, pool=pool):
            grads = torch.autograd.grad(self.outputs, aliases, self.grad_outputs, allow_unused=True)
            self.flat_grads, self.grad_slots = _flatten_by_dtype(grads)
        self.outputs = tuple(o.detach() for o in self.outputs)  # the captured autograd graph can go
        with torch.no_grad():
            for buffer, saved in zip(module.buffers(), saved_buffers):
                buffer.copy_(saved)
        self.rope_tables = cached_tables()  # read by the graphs from outside the module: kept alive
        self.num_params = len(names)

    def gradients(self) -> Tuple[torch.Tensor, ...]:
        """Fresh copies of the last replay's parameter gradients (None for parameters the outputs skip)."""
        copies = {dtype: flat.clone() for dtype, flat in self.flat_grads.items()}
        grads = [None] * self.num_params
        for index, dtype, start, shape in self.grad_slots:
            grads[index] = copies[dtype][start:start + shape.numel()].view(shape)
        return tuple(grads)


def _aliased_forward(module: nn.Module, names: List[str], x: torch.Tensor):
    """``module(x)`` computed from fresh aliases of the named parameters: (aliases, outputs)."""
    params = dict(module.named_parameters())
    aliases = {name: params[name].view_as(params[name]) for name in names}
    return list(aliases.values()), tuple(functional_call(module, aliases, (x,)))


def _warm_up(module: nn.Module, names: List[str], x: torch.Tensor):
    """One eager forward and backward; its autograd graph is gone when this returns."""
    aliases, outs = _aliased_forward(module, names, x)
    torch.autograd.grad(outs, aliases, [torch.ones_like(o) for o in outs], allow_unused=True)


def _flatten_by_dtype(grads: Sequence):
    """One flat tensor per dtype holding every gradient, and each gradient's (index, dtype, offset, shape)."""
    groups: Dict[torch.dtype, list] = {}
    slots = []
    for index, grad in enumerate(grads):
        if grad is None:
            continue
        group = groups.setdefault(grad.dtype, [])
        slots.append((index, grad.dtype, sum(g.numel() for g in group), grad.shape))
        group.append(grad.reshape(-1))
    return {dtype: torch.cat(group) for dtype, group in groups.items()}, slots


class _Replay(torch.autograd.Function):
    """Replays a capture's forward graph; its backward replays the backward graph."""

    @staticmethod
    def forward(ctx, graphs: 'TrainingGraphs', capture: _Capture, x: torch.Tensor, *params: torch.Tensor):
        capture.input.copy_(x)
        capture.forward_graph.replay()
        graphs.awaiting_backward = True
        ctx.graphs, ctx.capture = graphs, capture
        return tuple(o.clone() for o in capture.outputs)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grad_outputs):
        capture = ctx.capture
        for static, grad in zip(capture.grad_outputs, grad_outputs):
            if grad is None:
                static.zero_()
            else:
                static.copy_(grad)
        capture.backward_graph.replay()
        ctx.graphs.awaiting_backward = False
        return (None, None, None) + capture.gradients()


class TrainingGraphs:
    """Runs ``forward(x)`` of ``module`` as replays of captured CUDA graphs where that is exact (module doc).

    Holds no reference to the module: a deep copy (e.g. an EMA model) starts with no captures of its own.
    """

    def __init__(self, max_signatures: int):
        if not isinstance(max_signatures, int) or max_signatures < 1:
            raise ValueError(f'max_signatures must be a positive int, got {max_signatures!r}')
        self.max_signatures = max_signatures
        self._captures: Dict[tuple, _Capture] = {}
        self._pool = None
        self._capturing = False
        self.awaiting_backward = False
        self._warned = set()

    def __call__(self, module: nn.Module, forward: Callable, x: torch.Tensor):
        """``forward(x)``, or its replay; ``forward`` computes ``module(x)`` without these graphs."""
        if not (x.is_cuda and torch.is_grad_enabled() and not x.requires_grad
                and not torch.is_inference_mode_enabled()) or self._capturing:
            return forward(x)
        named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        if not params:
            return forward(x)
        if self.awaiting_backward:
            self._warn_once('pending', f'{type(module).__name__} was called again before the backward of its '
                                       f'previous call: such calls run eagerly (a replay would overwrite the '
                                       f'activations that backward needs)')
            return forward(x)
        key = self._signature(module, x, params)
        capture = self._captures.get(key)
        if capture is None:
            if len(self._captures) >= self.max_signatures:
                self._warn_once('full', f'{type(module).__name__}: CUDA graphs are kept for {self.max_signatures} '
                                        f'input signature(s) (cuda_graphs); new ones, like {tuple(x.shape)}, run '
                                        f'eagerly. Pad batches to a fixed size or raise cuda_graphs.')
                return forward(x)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            self._capturing = True  # the capture calls the module again: those calls run its forward
            try:
                capture = self._captures[key] = _Capture(module, [name for name, _ in named], x, self._pool)
            finally:
                self._capturing = False
        return _Replay.apply(self, capture, x, *params)

    @staticmethod
    def _signature(module: nn.Module, x: torch.Tensor, params: List[nn.Parameter]) -> tuple:
        autocast = torch.is_autocast_enabled('cuda')
        return (tuple(x.shape), x.dtype, x.device, autocast, torch.get_autocast_dtype('cuda') if autocast else None,
                tuple(p.data_ptr() for p in params), tuple(m.training for m in module.modules()))

    def _warn_once(self, kind: str, message: str):
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(message, stacklevel=3)

    def __deepcopy__(self, memo):
        return TrainingGraphs(self.max_signatures)

    def __getstate__(self):
        return dict(max_signatures=self.max_signatures)

    def __setstate__(self, state):
        self.__init__(state['max_signatures'])
