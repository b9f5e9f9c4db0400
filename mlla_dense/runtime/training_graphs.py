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
- inputs that need their own gradient, calls without gradients (inference) and CPU tensors run eagerly, silently.
  Each signature keeps its own input, output and gradient buffers.
- these run eagerly with one warning per kind (:meth:`TrainingGraphs.eager_reason`): a new signature past
  ``max_signatures`` or once the captures' memory exceeds ``max_memory_gb``; a SyncBatchNorm in the module while
  more than one process trains (its forward exchanges statistics between processes, which a replay would not
  redo); a call before the backward of the previous one.
- gradient accumulation needs no fallback: every backward returns fresh copies of the graph's gradients, which
  autograd adds to ``.grad`` as it does for eager gradients;
- frozen stages need none either: frozen parameters are constants the graphs read in place (an in-place load
  reaches the replays), and the signature holds every parameter's address and trainability and every module's
  training mode, so freezing, unfreezing, ``norm_eval`` or a replaced parameter gives a new capture.
Random numbers (drop path) come from the default CUDA generator, which advances on every replay. Tensors the
kernels cache outside the module (``mlla_dense.kernels.capture_keepalive``) are held as long as the capture.

The captures differentiate with respect to aliases of the parameters (``p.view_as(p)``, made inside the
capture and passed in with ``torch.func.functional_call``), never the parameters themselves: the parameters'
gradient accumulators may live on another stream (DistributedDataParallel creates and keeps them on the
default stream), and the autograd engine would make that stream wait on the capturing one, which CUDA refuses.
"""
import gc
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from mmengine.logging import print_log
from torch import nn
from torch.autograd.function import once_differentiable
from torch.func import functional_call

from mlla_dense.kernels.capture_keepalive import capture_keepalive


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
        # torch.cuda.graph synchronizes, collects and empties the cache on entry: do so first, so that only the
        # captures' growth counts (else the blocks it frees make the growth negative)
        torch.cuda.synchronize()
        gc.collect()
        torch.cuda.empty_cache()
        reserved = torch.cuda.memory_reserved()
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
        self.keepalive = capture_keepalive()  # read by the graphs from outside the module
        self.num_params = len(names)
        # the pool's growth and the static buffers, the input included
        self.memory_bytes = torch.cuda.memory_reserved() - reserved + self.input.numel() * self.input.element_size()

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

    Args:
        max_signatures (int): input signatures captured at most; later new ones run eagerly.
        max_memory_gb (float, optional): no new capture once the captures' memory (``capture_bytes``) exceeds
            this many GiB. Default: no limit.

    ``capture_bytes`` is the CUDA memory the captures hold (the growth of reserved memory across each capture:
    the shared pool and the static buffers); each capture logs its share. Holds no reference to the module: a
    deep copy (e.g. an EMA model) starts with no captures of its own.
    """

    def __init__(self, max_signatures: int, max_memory_gb: Optional[float] = None):
        if not isinstance(max_signatures, int) or max_signatures < 1:
            raise ValueError(f'max_signatures must be a positive int, got {max_signatures!r}')
        if max_memory_gb is not None and not (isinstance(max_memory_gb, (int, float)) and max_memory_gb > 0):
            raise ValueError(f'max_memory_gb must be a positive number or None, got {max_memory_gb!r}')
        self.max_signatures = max_signatures
        self.max_memory_gb = max_memory_gb
        self._captures: Dict[tuple, _Capture] = {}
        self._pool = None
        self._capturing = False
        self.awaiting_backward = False
        self.capture_bytes = 0
        self._warned = set()

    def __call__(self, module: nn.Module, forward: Callable, x: torch.Tensor):
        """``forward(x)``, or its replay; ``forward`` computes ``module(x)`` without these graphs."""
        if not (x.is_cuda and torch.is_grad_enabled() and not x.requires_grad
                and not torch.is_inference_mode_enabled()) or self._capturing:
            return forward(x)
        named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        if not named:
            return forward(x)
        key = self._signature(module, x)
        reason = self.eager_reason(module, key, tuple(x.shape))
        if reason is not None:
            self._warn_once(*reason)
            return forward(x)
        capture = self._captures.get(key)
        if capture is None:
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            self._capturing = True  # the capture calls the module again: those calls run its forward
            try:
                capture = self._captures[key] = _Capture(module, [name for name, _ in named], x, self._pool)
            finally:
                self._capturing = False
            self.capture_bytes += capture.memory_bytes
            print_log(f'{type(module).__name__}: captured the training forward and backward for input '
                      f'{tuple(x.shape)} ({len(self._captures)}/{self.max_signatures} signatures): '
                      f'{capture.memory_bytes / 2 ** 20:.0f} MiB, {self.capture_bytes / 2 ** 20:.0f} MiB in all',
                      logger='current')
        return _Replay.apply(self, capture, x, *(p for _, p in named))

    def eager_reason(self, module: nn.Module, key: tuple, shape: tuple) -> Optional[Tuple[str, str]]:
        """(kind, message) when a gradient-taking CUDA call of signature ``key`` must run eagerly, else None."""
        name = type(module).__name__
        if self.awaiting_backward:
            return 'pending', (f'{name} was called again before the backward of its previous call: such calls run '
                               f'eagerly (a replay would overwrite the activations that backward needs)')
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 and any(
                'SyncBatchNorm' in type(m).__name__ for m in module.modules()):
            return 'syncbn', (f'{name} has SyncBatchNorm layers and {dist.get_world_size()} processes train: its '
                              f'forward exchanges statistics between them, which a CUDA graph replay would not '
                              f'redo, so it runs eagerly. Use BatchNorm (no sync_bn) to replay CUDA graphs.')
        if key in self._captures:
            return None
        if len(self._captures) >= self.max_signatures:
            return 'full', (f'{name}: CUDA graphs are kept for {self.max_signatures} input signature(s) '
                            f'(cuda_graphs); new ones, like {shape}, run eagerly. Pad batches to a few sizes '
                            f'(BucketedDetDataPreprocessor) or raise cuda_graphs.')
        if self.max_memory_gb is not None and self.capture_bytes > self.max_memory_gb * 2 ** 30:
            return 'memory', (f'{name}: the CUDA graphs hold {self.capture_bytes / 2 ** 30:.2f} GiB, past '
                              f'cuda_graphs_memory_gb={self.max_memory_gb}; new input signatures, like {shape}, '
                              f'run eagerly.')
        return None

    @staticmethod
    def _signature(module: nn.Module, x: torch.Tensor) -> tuple:
        autocast = torch.is_autocast_enabled('cuda')
        return (tuple(x.shape), x.dtype, x.device, autocast, torch.get_autocast_dtype('cuda') if autocast else None,
                tuple((p.data_ptr(), p.requires_grad) for p in module.parameters()),
                tuple(m.training for m in module.modules()))

    def _warn_once(self, kind: str, message: str):
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(message, stacklevel=3)

    def __deepcopy__(self, memo):
        return TrainingGraphs(self.max_signatures, self.max_memory_gb)

    def __getstate__(self):
        return dict(max_signatures=self.max_signatures, max_memory_gb=self.max_memory_gb)

    def __setstate__(self, state):
        self.__init__(state['max_signatures'], state.get('max_memory_gb'))
