"""Benchmark the Triton kernels against their PyTorch references: eager reference vs torch.compile(reference)
vs Triton, forward and forward+backward, with achieved GB/s and % of the HBM roofline (the bytes that must move).

``--op linear_attention``: the MLLA-T stage shapes of a 2x3x800x1344 input and stage 1 of 8x512x512 and
64x224x224; the roofline counts reading q, k, v and writing the output forward, plus reading dO, q, k, v and
writing dq, dk, dv backward. Writes linear_attention.json and .png.

``--op depthwise_conv``: MLLA's block convolutions (3x3 depthwise, fused SiLU, as the block's ``dwc``) at the
MLLA-T stage shapes of a 2x3x800x1344 input; the reference permutes the tokens to channels-first for PyTorch's
conv2d and back, as the official block does. The roofline counts reading x and writing the output forward,
plus reading dy and x and writing dx backward. Writes depthwise_conv.json and .png.

``--op layer_norm``: the MLLA blocks' LayerNorms at the MLLA-T stage shapes of a 2x3x800x1344 input, output in
the input's dtype; the reference is PyTorch's float32 layer_norm with the casts around it, as under autocast.
The roofline counts reading x and writing the output forward, plus reading dy and x and writing dx backward.
Writes layer_norm.json and .png.

``--op selective_scan``: the four SS2D paths of VMamba-T's stages for a 2x3x800x1344 input (d_state 1); the
roofline counts the inputs (the two shared sequences, delta, B, C) and the float32 output forward, plus the
inputs, dy and every input gradient backward. The reference is a Python loop over positions: it and its
compilation run only up to ``--max-reference-length`` positions, longer shapes are Triton-only (recorded so).
Writes selective_scan.json and .png.

``--op gated_linear_attention``: the forget gate's chunked gated linear attention over the four SS2D directions at
MLLA-T's stage shapes of a 2x3x800x1344 input and stage 1 of 64x224x224 (heads of 32 channels), with one decay
per head (Mamba-2's form) and one per key channel (GLA's); beside the reference and its compilation it times
the selective-scan kernel (``selective_scan``: VMamba's four SS2D paths, d_state 1) on the same batch, channels
and tokens. The roofline counts reading q, k, v, the log decays and writing o and z (float32) forward, plus
reading dO, dz and writing every input gradient backward. Writes gated_linear_attention.json and .png.

``--tuning JSON`` replaces entries of the op's TUNING table (tiles, warps, programs per SM, loop stages) for the run,
to compare settings on one's own GPU; the JSON records them. The depthwise conv's tiles before the thirty-fourth
session, for instance: ``--op depthwise_conv --tuning '{"block_n": 64, "tile_w": 0, "num_warps": 4}'``; its
weight-gradient loop software-pipelined: ``--tuning '{"grad_stages": 3}'``.

Times are CUDA-graph replays (device time, as the kernels run inside a model where the CPU runs ahead);
``eager_ms`` also records plain launches from Python, which include the CPU's launch overhead. ``--smoke``
runs tiny shapes on any device (on CPU with TRITON_INTERPRET=1) to check the tool, not to measure.

    python tools/benchmark_kernels.py --op linear_attention --out benchmarks/results
    python tools/benchmark_kernels.py --op depthwise_conv --out benchmarks/results
    python tools/benchmark_kernels.py --op layer_norm --out benchmarks/results
    python tools/benchmark_kernels.py --op selective_scan --out benchmarks/results
    python tools/benchmark_kernels.py --op gated_linear_attention --out benchmarks/results
"""
import argparse
import importlib
import json
import os

import torch

from mlla_dense.kernels.backend import forced_backend
from mlla_dense.kernels.depthwise_conv import depthwise_conv, depthwise_conv_reference
from mlla_dense.kernels.gated_linear_attention import (DIRECTIONS, gated_linear_attention,
                                                      gated_linear_attention_reference)
from mlla_dense.kernels.kernel_op import clear_plans
from mlla_dense.kernels.layer_norm import layer_norm, layer_norm_reference
from mlla_dense.kernels.linear_attention import linear_attention, linear_attention_reference
from mlla_dense.kernels.selective_scan import ss2d_paths, ss2d_paths_reference
from mlla_dense.utils.benchmarking import copy_bandwidth_gbs, print_table, run_info, time_ms, write_json

# (name, B, H, W, C, heads)
ATTENTION_SHAPES = [('800x1344 stage1', 2, 200, 336, 64, 2), ('800x1344 stage2', 2, 100, 168, 128, 4),
                    ('800x1344 stage3', 2, 50, 84, 256, 8), ('800x1344 stage4', 2, 25, 42, 512, 16),
                    ('8x512x512 stage1', 8, 128, 128, 64, 2), ('64x224x224 stage1', 64, 56, 56, 64, 2)]
# (name, B, H, W, C): MLLA-T stages (depthwise convs and LayerNorms)
STAGE_SHAPES = [('800x1344 stage1', 2, 200, 336, 64), ('800x1344 stage2', 2, 100, 168, 128),
               ('800x1344 stage3', 2, 50, 84, 256), ('800x1344 stage4', 2, 25, 42, 512)]
# (name, B, D, L, N): VMamba-T (ssm_ratio 1: D = stage channels) on 800x1344.
SCAN_SHAPES = [('800x1344 stage1', 2, 96, 200 * 336, 1), ('800x1344 stage2', 2, 192, 100 * 168, 1),
               ('800x1344 stage3', 2, 384, 50 * 84, 1), ('800x1344 stage4', 2, 768, 25 * 42, 1)]
# (name, B, H, W, heads, head width, one decay per key channel): MLLA-T's heads of 32 channels.
GATED_SHAPES = [(f'{name} {kind}', b, h, w, c // 32, 32, kind == 'channel')
                for kind in ('head', 'channel') for name, b, h, w, c, _ in ATTENTION_SHAPES
                if name != '8x512x512 stage1']
SMOKE_SHAPES = {'linear_attention': [('smoke', 1, 5, 7, 32, 2)], 'selective_scan': [('smoke', 1, 4, 24, 1)],
                'depthwise_conv': [('smoke', 1, 5, 7, 32)], 'layer_norm': [('smoke', 1, 5, 7, 32)],
                'gated_linear_attention': [('smoke', 1, 2, 3, 1, 4, False)]}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--op', default='linear_attention', choices=list(OPS))
    parser.add_argument('--out', default='benchmarks/results', help='folder for the JSON and PNG')
    parser.add_argument('--dtype', default='bfloat16', choices=['bfloat16', 'float16', 'float32'])
    parser.add_argument('--no-compile', action='store_true', help='skip the torch.compile baseline')
    parser.add_argument('--shapes', type=int, nargs='*', help='indices into the shape list (default: all)')
    parser.add_argument('--max-reference-length', type=int, default=1050,
                        help='selective_scan: longest sequence for the eager and compiled reference loops')
    parser.add_argument('--smoke', action='store_true', help='tiny shapes on any device, to check the tool')
    parser.add_argument('--tuning', type=json.loads, metavar='JSON',
                        help="a JSON object whose entries replace those of the op's TUNING table for this run")
    return parser.parse_args()


# the module holding each op's TUNING table
TUNING_MODULES = {'linear_attention': 'mlla_dense.kernels.linear_attention.launch',
                  'gated_linear_attention': 'mlla_dense.kernels.gated_linear_attention.launch',
                  'depthwise_conv': 'mlla_dense.kernels.depthwise_conv.op',
                  'layer_norm': 'mlla_dense.kernels.layer_norm.op'}


def apply_tuning(op: str, changes) -> dict:
    """The op's TUNING table (None for an op without one) with ``changes`` put in where given, every launch plan
    forgotten so that new launches use it; unknown ops or entries stop the run with what there is."""
    if op not in TUNING_MODULES:
        if changes is None:
            return None
        raise SystemExit(f'--tuning: {op} has no TUNING table (ops with one: {", ".join(sorted(TUNING_MODULES))})')
    table = importlib.import_module(TUNING_MODULES[op]).TUNING
    if changes is None:
        return dict(table)
    if not isinstance(changes, dict):
        raise SystemExit(f'--tuning takes a JSON object, got {changes!r}')
    unknown = sorted(set(changes) - set(table))
    if unknown:
        raise SystemExit(f'--tuning: {unknown} are not in the TUNING table of {op}, whose entries are {sorted(table)}')
    table.update(changes)
    clear_plans()
    return dict(table)


def attention_case(shape, dtype, device):
    """(inputs, runner, elements, {pass: bytes}) of one linear-attention shape."""
    _, b, h, w, c, heads = shape
    gen = torch.Generator(device=device).manual_seed(0)
    n = h * w
    tensors = dict(qk=torch.randn(b, n, 2 * c, device=device, dtype=dtype, generator=gen),
                   v=torch.randn(b, n, c, device=device, dtype=dtype, generator=gen),
                   weight=torch.randn(c, 1, 3, 3, device=device, generator=gen) * 0.3,
                   bias=torch.randn(c, device=device, generator=gen))

    def run(fn, t):
        return fn(t['qk'], t['v'], (h, w), heads, t['weight'], t['bias'])

    elem = torch.finfo(dtype).bits // 8
    return tensors, run, b * n * c, {'forward': 4 * b * n * c * elem, 'forward+backward': 11 * b * n * c * elem}


def conv_case(shape, dtype, device):
    """(inputs, runner, elements, {pass: bytes}) of one depthwise-conv shape (the block's SiLU variant)."""
    _, b, h, w, c = shape
    gen = torch.Generator(device=device).manual_seed(0)
    tensors = dict(x=torch.randn(b, h * w, c, device=device, dtype=dtype, generator=gen),
                   weight=torch.randn(c, 1, 3, 3, device=device, generator=gen) * 0.3,
                   bias=torch.randn(c, device=device, generator=gen))

    def run(fn, t):
        return fn(t['x'], (h, w), t['weight'], t['bias'], False, 'silu')

    elem = torch.finfo(dtype).bits // 8
    size = b * h * w * c
    return tensors, run, size, {'forward': 2 * size * elem, 'forward+backward': 5 * size * elem}


def norm_case(shape, dtype, device):
    """(inputs, runner, elements, {pass: bytes}) of one LayerNorm shape (the blocks' norm1 / norm2)."""
    _, b, h, w, c = shape
    gen = torch.Generator(device=device).manual_seed(0)
    tensors = dict(x=torch.randn(b, h * w, c, device=device, dtype=dtype, generator=gen),
                   weight=1 + 0.1 * torch.randn(c, device=device, generator=gen),
                   bias=torch.randn(c, device=device, generator=gen))

    def run(fn, t):
        return fn(t['x'], t['weight'], t['bias'], 1e-5, dtype)

    elem = torch.finfo(dtype).bits // 8
    size = b * h * w * c
    return tensors, run, size, {'forward': 2 * size * elem, 'forward+backward': 5 * size * elem}


def scan_case(shape, dtype, device):
    """(inputs, runner, elements, {pass: bytes}) of the four SS2D paths at one stage shape."""
    _, b, d, length, n = shape
    gen = torch.Generator(device=device).manual_seed(0)

    def randn(*size, scale=1.0, shift=0.0, low=True):
        t = torch.randn(*size, device=device, generator=gen) * scale + shift
        return t.to(dtype) if low else t

    tensors = dict(xs=randn(b, 2, d, length), delta=randn(b, 4 * d, length, scale=0.5, shift=-1.0),
                   A=-torch.exp(randn(4 * d, n, scale=0.5, low=False)), B=randn(b, 4, n, length),
                   C=randn(b, 4, n, length), D=randn(4 * d, low=False), bias=randn(4 * d, scale=0.3, low=False))

    def run(fn, t):
        return fn(t['xs'], t['delta'], t['A'], t['B'], t['C'], t['D'], t['bias'])

    inputs = sum(t.numel() * t.element_size() for t in tensors.values())
    out = b * 4 * d * length * 4
    return tensors, run, b * 4 * d * length, {'forward': inputs + out, 'forward+backward': 3 * inputs + 2 * out}


def triton_path(fn):
    """The op's public function with its Triton kernels (whatever MLLA_DENSE_BACKEND says)."""
    def run(*args):
        with forced_backend('triton'):
            return fn(*args)
    return run


def gated_case(shape, dtype, device):
    """(inputs, runner, elements, {pass: bytes}, {'selective_scan': (fn, inputs, runner)}) of one gated shape: the
    four SS2D directions, and VMamba's four-path selective scan over the same (B, C, H*W)."""
    name, b, h, w, heads, width, per_channel = shape
    gen = torch.Generator(device=device).manual_seed(0)
    n = h * w

    def randn(*size):
        return torch.randn(*size, device=device, generator=gen)

    tensors = dict(q=(randn(b, n, heads, width).abs() + 0.1).to(dtype),
                   k=(randn(b, n, heads, width).abs() + 0.1).to(dtype), v=randn(b, n, heads, width).to(dtype),
                   g=(-0.1 * randn(b, n, heads, *((width,) if per_channel else ())).abs()).to(dtype))

    def run(fn, t):
        return fn(t['q'], t['k'], t['v'], t['g'], DIRECTIONS, (h, w))

    elem = torch.finfo(dtype).bits // 8
    c = heads * width
    inputs = (3 * b * n * c + tensors['g'].numel()) * elem
    outputs = 4 * b * n * (c + heads)
    scan_tensors, scan_run, _, _ = scan_case((name, b, c, n, 1), dtype, device)
    return (tensors, run, b * n * c, {'forward': inputs + outputs, 'forward+backward': 3 * inputs + 2 * outputs},
            {'selective_scan': (triton_path(ss2d_paths), scan_tensors, scan_run)})


OPS = {'linear_attention': (ATTENTION_SHAPES, attention_case, linear_attention_reference,
                            triton_path(linear_attention)),
       'gated_linear_attention': (GATED_SHAPES, gated_case, gated_linear_attention_reference,
                                  triton_path(gated_linear_attention)),
       'selective_scan': (SCAN_SHAPES, scan_case, ss2d_paths_reference, triton_path(ss2d_paths)),
       'depthwise_conv': (STAGE_SHAPES, conv_case, depthwise_conv_reference, triton_path(depthwise_conv)),
       'layer_norm': (STAGE_SHAPES, norm_case, layer_norm_reference, triton_path(layer_norm))}


def measure(fn, tensors, run, backward, cuda):
    """(CUDA-graph ms, plain-launch ms) of the forward or forward+backward."""
    if not backward:
        def step():
            with torch.no_grad():
                run(fn, tensors)
    else:
        leaves = {k: t.detach().requires_grad_() if t.is_floating_point() else t for k, t in tensors.items()}
        out = run(fn, leaves)
        grad = [torch.randn_like(o) for o in (out if isinstance(out, tuple) else (out,))]  # every output's
        del out

        def step():
            torch.autograd.grad(run(fn, leaves), list(leaves.values()), grad)
    return time_ms(step, cuda_graph=cuda), time_ms(step)


def main():
    args = parse_args()
    dtype = getattr(torch, args.dtype)
    cuda = torch.cuda.is_available()
    if not cuda and not (args.smoke and os.environ.get('TRITON_INTERPRET') == '1'):
        raise SystemExit('benchmark_kernels.py measures on a CUDA device; on CPU only --smoke runs, through '
                         'the Triton interpreter: TRITON_INTERPRET=1 python tools/benchmark_kernels.py --smoke ...')
    device = 'cuda' if cuda else 'cpu'
    bandwidth = copy_bandwidth_gbs() if cuda else None
    tuning = apply_tuning(args.op, args.tuning)
    all_shapes, make_case, reference, triton_fn = OPS[args.op]
    all_shapes = SMOKE_SHAPES[args.op] if args.smoke else all_shapes
    shapes = [all_shapes[i] for i in args.shapes] if args.shapes else all_shapes
    records, skipped = [], []
    for shape in shapes:
        name = shape[0]
        tensors, run, elements, n_bytes, *extras = make_case(shape, dtype, device)
        impls = {'triton': triton_fn}
        length = shape[3] if args.op == 'selective_scan' else 0
        if length > args.max_reference_length:
            skipped.append(dict(shape=name, impls=['eager', 'compile'],
                                reason=f'reference loop over {length} > {args.max_reference_length} positions'))
        else:
            impls['eager'] = reference
            if not args.no_compile:
                # a fresh compilation per shape: past dynamo's recompile limit (8) it would silently run eager
                torch._dynamo.reset()
                impls['compile'] = torch.compile(reference, dynamic=False)
        runs = {impl: (fn, tensors, run) for impl, fn in impls.items()}
        runs.update(*extras)  # other kernels timed on the same shape
        for backward, pass_name in ((False, 'forward'), (True, 'forward+backward')):
            roofline_ms = n_bytes[pass_name] / (bandwidth * 1e9) * 1e3 if bandwidth else None
            for impl, (fn, impl_tensors, impl_run) in runs.items():
                ms, eager_ms = measure(fn, impl_tensors, impl_run, backward, cuda)
                records.append(dict(shape=name, dims=list(shape[1:]), elements=elements, dtype=args.dtype,
                                    impl=impl, pass_=pass_name, ms=round(ms, 4), eager_ms=round(eager_ms, 4),
                                    gbs=round(n_bytes[pass_name] / (ms * 1e-3) / 1e9, 1),
                                    roofline_ms=roofline_ms and round(roofline_ms, 4),
                                    pct_roofline=roofline_ms and round(100 * roofline_ms / ms, 1)))
                print(f'{name:20s} {pass_name:17s} {impl:8s} {ms * 1e3:11.1f} us (plain launches '
                      f'{eager_ms * 1e3:.1f} us)', flush=True)
    for r in records:
        base = {x['impl']: x['ms'] for x in records if x['shape'] == r['shape'] and x['pass_'] == r['pass_']}
        for impl in ('eager', 'compile'):
            if impl in base:
                r[f'speedup_vs_{impl}'] = round(base[impl] / r['ms'], 2)
    print_table([dict(r, us=round(r['ms'] * 1e3, 1), launch_us=round(r['eager_ms'] * 1e3, 1)) for r in records],
                ['shape', 'pass_', 'impl', 'us', 'launch_us', 'gbs', 'pct_roofline', 'speedup_vs_eager',
                 'speedup_vs_compile'])
    info = dict(run_info(), copy_bandwidth_gbs=bandwidth and round(bandwidth, 1), tuning=tuning)
    write_json(os.path.join(args.out, f'{args.op}.json'), dict(info, records=records, not_run=skipped))
    plot(records, info, args.op, os.path.join(args.out, f'{args.op}.png'))


def plot(records, info, op, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, pass_name in zip(axes, ('forward', 'forward+backward')):
        rows = sorted((r for r in records if r['pass_'] == pass_name), key=lambda r: r['elements'])
        for impl in dict.fromkeys(r['impl'] for r in rows):
            pts = [r for r in rows if r['impl'] == impl]
            ax.plot([r['elements'] for r in pts], [r['ms'] * 1e3 for r in pts], 'o-', label=impl)
        roof = [r for r in rows if r['impl'] == 'triton' and r['roofline_ms']]
        if roof:
            ax.plot([r['elements'] for r in roof], [r['roofline_ms'] * 1e3 for r in roof], 'k--',
                    label='HBM roofline')
        ax.set(xscale='log', yscale='log', xlabel='elements per output tensor', ylabel='time (us)',
               title=f'{op}, {pass_name}, {rows[0]["dtype"]}')
        ax.grid(True, which='both', alpha=0.3)
        ax.legend()
    fig.suptitle(f'{info["device"]}, {info["date"]}', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == '__main__':
    main()
