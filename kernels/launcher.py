"""Kernel launches with little host work, and the same launches as Inductor sees them.

``kernel[grid](*args, **meta)`` makes Triton bind and specialize every argument, build a cache key and look the
binary up on every call: tens of microseconds of Python per launch on the GPU hosts, for kernels that run a few
microseconds. An op knows when none of that can change: for one layout of its inputs (shapes, strides, dtypes,
device, 16-byte alignment of the pointers) every launch specializes the same way. A :class:`Launch` is one kernel
launch of such a layout with its grid and meta-parameters fixed: its first call goes through Triton, which
compiles or finds the binary; later calls hand the runtime arguments straight to the binary's C launcher.

While an op runs inside ``torch.library.triton_op`` (torch.compile tracing it, see kernel_op.py), launches go
through ``torch.library.wrap_triton`` instead, so Inductor records the kernels and launches them itself.
"""
import torch

from .switch import Switch

# Off where launches must keep going through Triton's own path (tests/test_kernels/compile_for_gpu.py compiles
# without a GPU and never runs a binary).
direct_launches = True
_traced = Switch()  # on inside traced_launches()


class Launch:
    """One launch of ``kernel`` over ``grid`` with meta-parameters ``meta`` (constexprs and launch options such as
    num_warps), called with the runtime arguments in the kernel's parameter order."""

    __slots__ = ('kernel', 'grid', 'meta', '_direct')

    def __init__(self, kernel, grid, **meta):
        self.kernel = kernel
        self.grid = tuple(grid) + (1,) * (3 - len(grid))
        self.meta = {name: _static(value) for name, value in meta.items()}
        self._direct = None

    def __call__(self, *args):
        direct = self._direct
        traced = _traced.on
        if direct is not None and not traced:
            direct(args)
        elif traced:
            _traced_launch(self, args)
        else:
            compiled = self.kernel[self.grid](*args, **self.meta)
            if direct_launches:
                self._direct = _direct_launch(self, compiled, len(args))


def _static(value):
    """A meta-parameter as a compile-time constant: a symbolic size (torch.compile tracing with dynamic shapes
    derived it, e.g. a tile from the token count) becomes its current value, which guards the compiled graph on it
    (other values recompile) instead of handing Triton a symbol."""
    return int(value) if isinstance(value, torch.SymInt) else value


def _traced_launch(launch: Launch, args: tuple):
    """The launch inside a triton_op: recorded by wrap_triton while traced, run where it runs for real. Kernels
    that wrap_triton cannot record (the Triton interpreter's) are skipped on fake tensors, whose outputs are
    never read."""
    from torch._subclasses.fake_tensor import FakeTensor
    from torch.library import wrap_triton
    kernel = wrap_triton(launch.kernel)
    if kernel is launch.kernel and any(isinstance(a, FakeTensor) for a in args):
        return
    kernel[launch.grid](*args, **launch.meta)


def _direct_launch(launch: Launch, compiled, num_args: int):
    """A function launching ``compiled`` (what Triton's launch returned) for ``launch``'s grid and meta, or None
    where Triton's own path must stay (the interpreter, a binary needing scratch memory, an unknown launcher)."""
    if not hasattr(compiled, 'packed_metadata') or not torch.cuda.is_available():
        return None
    launcher = compiled.run  # loads the binary on the current device
    needs = ('launch', 'launch_cooperative_grid', 'launch_pdl', 'global_scratch_size', 'profile_scratch_size')
    if not all(hasattr(launcher, n) for n in needs) or launcher.global_scratch_size or launcher.profile_scratch_size:
        return None
    kernel = launch.kernel
    tail = []
    for param in kernel.params[num_args:]:
        if param.name in launch.meta:
            tail.append(launch.meta[param.name])
        elif param.has_default:
            tail.append(param.default)
        else:
            return None
    tail = tuple(tail)
    run = launcher.launch
    grid_x, grid_y, grid_z = launch.grid
    head = (launcher.launch_cooperative_grid, launcher.launch_pdl, None, None, compiled.packed_metadata,
            None, None, None)
    function = compiled.function
    get_device = torch._C._cuda_getDevice
    device = get_device()
    stream_of = torch._C._cuda_getCurrentRawStream

    def direct(args):
        if get_device() != device:
            raise RuntimeError(f'{kernel.__name__} was prepared on cuda:{device}, but cuda:{get_device()} is '
                               f'current; set the current device to the tensors\' device')
        run(grid_x, grid_y, grid_z, stream_of(device), function, *head, *args, *tail)
    return direct


def is_traced() -> bool:
    """Whether launches currently go through wrap_triton."""
    return _traced.on


# Within: launches go through ``wrap_triton`` (the body of a triton_op, which torch.compile traces).
traced_launches = _traced.turned_on
