"""Compile every Triton kernel of the package for an H100 (sm_90) on a machine without a GPU.

Run as a script with TRITON_INTERPRET unset (``python tests/test_kernels/compile_for_gpu.py``): a stand-in
driver makes Triton target sm_90, and kernel launches compile without running, through each op's autograd path
(forward and backward) at MLLA-T and VMamba-T channel counts in bf16, fp16 and fp32. Catches what the
interpreter cannot: code that Triton's GPU compiler rejects. Prints one JSON line per compiled kernel variant
(registers and spilled bytes per thread, from ptxas' report through cuobjdump) and exits 1 on the first error.
Kernels with float arguments compile a second time with those typed fp64, as torch.compile's generated code
passes Python floats (Inductor's signature for them), so a kernel that mixes one into float32-only math fails here.
Last, the chunked passes compile with their token loops software-pipelined, as their stage knobs allow.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime import driver
from triton.runtime.jit import JITFunction

from mlla_dense.kernels import launcher

H100 = GPUTarget('cuda', 90, 32)


class StandInDriver:
    """What Triton's launch path asks of a driver before it compiles: the target, a device and a stream."""

    def get_current_target(self):
        return H100

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0


def resources(kernel):
    """(registers, spilled bytes) per thread of a compiled kernel, or (None, None) without cuobjdump."""
    tool = os.path.join(os.path.dirname(triton.__file__), 'backends/nvidia/bin/cuobjdump')
    if not os.path.exists(tool):
        return None, None
    with tempfile.NamedTemporaryFile(suffix='.cubin') as f:
        f.write(kernel.asm['cubin'])
        f.flush()
        report = subprocess.run([tool, '-res-usage', f.name], capture_output=True, text=True).stdout
    match = re.search(r'REG:(\d+) STACK:(\d+)', report)
    return (int(match[1]), int(match[2])) if match else (None, None)


def compile_with_fp64_floats(fn, kernel, args):
    """Compile ``kernel`` (a CompiledKernel of ``fn``) again with its float arguments typed fp64."""
    names = [n for n, a in zip(fn.arg_names, args) if isinstance(a, float)]
    if not names:
        return
    signature = dict(kernel.src.signature, **{n: 'fp64' for n in names})
    options = {k: getattr(kernel.metadata, k) for k in ('num_warps', 'num_stages', 'num_ctas', 'launch_pdl')}
    triton.compile(ASTSource(fn, signature, kernel.src.constants, kernel.src.attrs), target=H100, options=options)


def install_compile_only():
    """Make every kernel launch compile for H100 and return without running; report each new variant."""
    driver.set_active(StandInDriver())
    seen = set()
    launch = JITFunction.run

    def compile_only(self, *args, grid, warmup, **kwargs):
        kernel = launch(self, *args, grid=grid, warmup=True, **kwargs)
        if kernel.hash not in seen:
            seen.add(kernel.hash)
            compile_with_fp64_floats(self, kernel, args)
            regs, spills = resources(kernel)
            print(json.dumps(dict(kernel=self.fn.__name__, registers=regs, spilled_bytes=spills,
                                  shared_memory=kernel.metadata.shared)), flush=True)
        return kernel

    JITFunction.run = compile_only
    launcher.direct_launches = False  # no binary is ever loaded here
    torch.cuda.get_device_properties = lambda device: type('H100', (), {'multi_processor_count': 132})


def backward_through(out, *leaves):
    torch.autograd.grad(out, leaves, torch.ones_like(out))


def compile_elementwise(dtype):
    """The fused MLLA block's elementwise kernels (kernels/elementwise), through their public functions."""
    from mlla_dense.kernels import backend
    from mlla_dense.kernels import elementwise as ew
    backend._INTERPRETER = True  # lets the triton backend take CPU tensors: here they are only compiled for
    with backend.forced_backend('triton'):
        x, g, d = (torch.randn(2, 30, 64, dtype=dtype) for _ in range(3))
        ew.silu_gate(x, g)
        ew.silu_gate_backward(d, x, g, torch.empty_like(x), torch.empty_like(x))
        keep = torch.ones(2)
        ew.residual_add(x.float(), x, keep, 0.9)
        ew.residual_add(x, x)
        ew.drop_path_grad(d.float(), keep, 0.9, dtype)
        _, sums = ew.drop_path_grad(d.float(), keep, 0.9, dtype, column_sums=True)
        ew.gelu(x)
        ew.gelu_with_grad(x, d)
        _, _, wide_sums = ew.gelu_with_grad(torch.cat([x, x], -1), torch.cat([d, d], -1), column_sums=True)
        ew.finish_column_sums(sums, wide_sums)
        ew.finish_column_sums(sums)
        ew.column_sums(x, torch.cat([d, d], -1))
        ew.column_sums(x[..., :32])
        ew.pack([torch.randn(8, 8), torch.randn(8)], dtype)


def compile_grid_sequences(dtype):
    """SS2D's layout kernels (kernels/grid_sequences), through their public functions."""
    from mlla_dense.kernels import backend
    from mlla_dense.kernels.grid_sequences import grid_to_sequences, sequences_to_grid
    backend._INTERPRETER = True
    with backend.forced_backend('triton'):
        grid_to_sequences(torch.randn(2, 5, 6, 96, dtype=dtype))
        sequences_to_grid(torch.randn(2, 4, 96, 30), 5, 6)
        sequences_to_grid(torch.randn(2, 4, 96, 30, dtype=dtype), 5, 6)
        sequences_to_grid(torch.randn(2, 2, 96, 30, dtype=dtype), 5, 6)


def compile_all():
    from mlla_dense.kernels.depthwise_conv.op import depthwise_conv_op
    from mlla_dense.kernels.gated_linear_attention.op import GatedLinearAttentionFunction
    from mlla_dense.kernels.layer_norm.op import layer_norm_op
    from mlla_dense.kernels.linear_attention.op import linear_attention_op
    from mlla_dense.kernels.selective_scan.op import selective_scan_op

    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        def randn(*shape, low=True):
            return torch.randn(*shape, dtype=dtype if low else torch.float32).requires_grad_()

        for c, heads in ((64, 2), (96, 3), (512, 16)):
            qk, v, w, b = randn(2, 30, 2 * c), randn(2, 30, c), randn(c, 1, 3, 3, low=False), randn(c, low=False)
            backward_through(linear_attention_op(qk, v, w, b, 5, 6, heads), qk, v, w, b)
        for c in (64, 512):
            for residual, silu in ((True, False), (False, True)):
                x, w, b = randn(2, 30, c), randn(c, 1, 3, 3, low=False), randn(c, low=False)
                backward_through(depthwise_conv_op(x, w, b, 5, 6, residual, silu), x, w, b)
        for c in (64, 768):
            x, w, b = randn(2, 30, c), randn(c, low=False), randn(c, low=False)
            backward_through(layer_norm_op(x, w, b, 1e-5, torch.bfloat16), x, w, b)
        compile_elementwise(dtype)
        compile_grid_sequences(dtype)
        for per_channel in (False, True):
            for heads, width, value_width in ((2, 32, 32), (1, 16, 96), (8, 64, 64)):
                q, k, v = randn(2, 30, heads, width), randn(2, 30, heads, width), randn(2, 30, heads, value_width)
                g = randn(2, 30, heads, *((width,) if per_channel else ()))
                o, z = GatedLinearAttentionFunction.apply(q, k, v, g, 'rows,columns_reversed', [5, 6])
                backward_through(o.sum() + z.sum(), q, k, v, g)
        if dtype == torch.float16:
            continue  # the scan takes bf16 or fp32
        for n_state in (1, 16):
            u, delta = randn(2, 2, 96, 40), randn(2, 384, 40)
            a, bb, cc = randn(384, n_state, low=False), randn(2, 4, n_state, 40), randn(2, 4, n_state, 40)
            d, bias = randn(384, low=False), randn(384, low=False)
            backward_through(selective_scan_op(u, delta, a, bb, cc, d, bias, True, 2),
                             u, delta, a, bb, cc, d, bias)


def compile_pipelined():
    """The chunked passes with their token loops software-pipelined (the stage knobs above 1, as a sweep sets
    them), in bf16 and fp32; then the knobs as they were."""
    from mlla_dense.kernels import backend
    from mlla_dense.kernels import elementwise as ew
    from mlla_dense.kernels.depthwise_conv import op as depthwise
    from mlla_dense.kernels.kernel_op import clear_plans
    from mlla_dense.kernels.layer_norm import op as layer_norm
    saved = depthwise.TUNING['grad_stages'], layer_norm.TUNING['backward_stages'], ew.COLUMN_SUMS_STAGES
    depthwise.TUNING['grad_stages'] = layer_norm.TUNING['backward_stages'] = ew.COLUMN_SUMS_STAGES = 3
    clear_plans()
    backend._INTERPRETER = True
    for dtype in (torch.bfloat16, torch.float32):
        for residual, silu in ((True, False), (False, True)):
            x, w, b = (torch.randn(*s, dtype=t).requires_grad_() for s, t in
                       (((2, 30, 64), dtype), ((64, 1, 3, 3), torch.float32), ((64,), torch.float32)))
            backward_through(depthwise.depthwise_conv_op(x, w, b, 5, 6, residual, silu), x, w, b)
        x, w, b = (torch.randn(*s, dtype=t).requires_grad_() for s, t in
                   (((2, 30, 64), dtype), ((64,), torch.float32), ((64,), torch.float32)))
        backward_through(layer_norm.layer_norm_op(x, w, b, 1e-5, torch.bfloat16), x, w, b)
        with backend.forced_backend('triton'):
            ew.column_sums(torch.randn(2, 30, 64, dtype=dtype))
    depthwise.TUNING['grad_stages'], layer_norm.TUNING['backward_stages'], ew.COLUMN_SUMS_STAGES = saved
    clear_plans()


if __name__ == '__main__':
    if os.environ.get('TRITON_INTERPRET', '0') not in ('', '0'):
        sys.exit('run with TRITON_INTERPRET unset: the interpreter does not compile')
    install_compile_only()
    compile_all()
    compile_pipelined()
