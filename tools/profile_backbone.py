"""Where a backbone's time goes: torch.profiler over its forward or forward+backward, and the host's share.

Reports the time per iteration by category (our Triton linear attention, depthwise convs and selective scan,
convolution, matmul, normalization, elementwise, copies and layout changes, reductions, other) and the top kernels by
their own names, so that a category can be checked. On a GPU the times are kernel times, and their sum (the
device's busy time) is set against the wall-clock time per iteration measured without the profiler: an
eager model whose device waits between kernels is host-bound. On CPU the times are the ops' self CPU times.
Categories come from name patterns (CATEGORIES below); what matches none is 'other'.

Also reported, from separate runs without the profiler: the kernel launches per iteration (GPU: kernels the
profiler saw), and per Triton op the host microseconds of each call (wall clock around the op's forward and its
backward: planning, allocations and launches, not the kernels, which run asynchronously), with the number of
calls per iteration. With --python-profile, cProfile over the same iterations lists the host's functions and
torch calls with the most own time (where an eager call's host time goes, below the ops).
Writes NAME.json, NAME.png (time per category) and, with --trace, a Chrome trace NAME.trace.json.

    python tools/profile_backbone.py --model mlla-t --size 800x1344 --batch 2 --dtype bf16
    python tools/profile_backbone.py --model vmamba-t --size 800x1344 --batch 2 --impl eager-reference
    python tools/profile_backbone.py --model vmamba-t --impl official --official-vmamba ../VMamba
"""
import argparse
import os
import re
import time

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

import mlla_dense  # noqa: F401  (registers the backbones)
from mlla_dense.kernels.backend import forced_backend
from mlla_dense.kernels.kernel_op import KernelOp
from mlla_dense.utils.benchmarking import print_table, run_info, time_ms, write_json
from mmdet.registry import MODELS

from benchmark import IMPLS, MLLA_VARIANTS, MODELS_TO_RUN, backbone_steps, mlla_variant_refusal

PROFILED_MODELS = dict(MODELS_TO_RUN, **{'mlla-nano': dict(type='MLLA', arch='nano')})
# (category, pattern on the lower-cased kernel or op name); the first match wins.
CATEGORIES = [
    ('linear attention (Triton)',
     r'_reduce_kv_kernel|_output_kernel|_grad_q_kernel|_grad_kv_kernel|finish_pairs_kernel'),
    ('depthwise conv (Triton)', r'_dwconv_|_tap_sum_kernel'),
    ('layer norm (Triton)', r'_layer_norm_fwd_kernel|_layer_norm_bwd_kernel'),
    ('selective scan (Triton)', r'_scan_forward_kernel|_scan_backward_kernel|_scan_finish_kernel'),
    ('SS2D layout (Triton)', r'_grid_to_sequences_kernel|_sequences_to_grid_kernel'),
    ('convolution', r'conv|cudnn|depthwise|dgrad|wgrad|fprop'),
    ('matmul', r'gemm|matmul|addmm|aten::mm\b|aten::bmm|aten::linear|cutlass|cublas|nvjet'),
    ('normalization', r'norm|welford|bn_fw|bn_bw'),
    ('copies and layout', r'copy|contiguous|permute|transpose|clone|cat\b|catarray|memcpy|memset|index|gather|'
                          r'scatter|flip|pad|unfold|im2col|roll'),
    ('reductions', r'reduce|sum|mean|triton_red|triton_per'),
    ('elementwise', r'elementwise|add|mul|silu|gelu|sigmoid|exp|softplus|div|sub|where|fill|zero|neg|pow|'
                    r'triton_poi|unrolled|vectorized'),
]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='mlla-t', choices=list(PROFILED_MODELS))
    parser.add_argument('--size', default='800x1344', help='HxW of the input')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--dtype', default='bf16', choices=['bf16', 'fp32'])
    parser.add_argument('--impl', default='mlla_dense',
                        choices=['mlla_dense', 'eager-reference', 'official', 'mlla_dense-compiled',
                                 *MLLA_VARIANTS, 'official-compiled'],
                        help='-compiled: torch.compile (default mode) of the model; the kernels then run from '
                             "Inductor's code, so there are no per-op host times (launches and --python-profile "
                             "still show where the host time goes); -compiled-fused: MLLA's blocks compiled as the "
                             "fused block's custom ops (compile_fused_blocks); -compiled-stored: MLLA compiled "
                             "with recompute_wide off")
    parser.add_argument('--official-mlla', metavar='DIR', help='a clone of LeapLabTHU/MLLA (for --impl official)')
    parser.add_argument('--official-vmamba', metavar='DIR',
                        help='a clone of MzeroMiko/VMamba with its CUDA scan built (for --impl official)')
    parser.add_argument('--forward-only', action='store_true', help='profile the forward alone (no_grad)')
    parser.add_argument('--iters', type=int, default=3, help='profiled iterations (after the timed ones)')
    parser.add_argument('--top', type=int, default=15, help='kernels listed by name')
    parser.add_argument('--trace', action='store_true', help='also write a Chrome trace')
    parser.add_argument('--python-profile', action='store_true',
                        help='also list the host functions with the most own time (cProfile)')
    parser.add_argument('--out', default='benchmarks/results')
    parser.add_argument('--name', help='stem of the output files (default: profile_MODEL_SIZE_DTYPE_IMPL)')
    args = parser.parse_args()
    if not re.fullmatch(r'\d+x\d+', args.size):
        parser.error(f'--size must be HxW, e.g. 800x1344, not {args.size!r}')
    if args.dtype == 'bf16' and not torch.cuda.is_available():
        parser.error('--dtype bf16 profiles the CUDA autocast path and needs a GPU; use --dtype fp32 on CPU')
    if args.iters < 1:
        parser.error('--iters must be at least 1')
    if IMPLS[args.impl][2]:
        flag = '--official-vmamba' if args.model.startswith('vmamba') else '--official-mlla'
        if getattr(args, flag[2:].replace('-', '_')) is None or args.model == 'mlla-nano':
            parser.error(f'--impl {args.impl} profiles the authors\' {args.model}: give {flag} DIR'
                         if args.model != 'mlla-nano' else f'--impl {args.impl} has no mlla-nano')
    refusal = mlla_variant_refusal(args.impl, args.model)
    if refusal:
        parser.error(refusal)
    return args


def category(name: str) -> str:
    lowered = name.lower()
    return next((cat for cat, pattern in CATEGORIES if re.search(pattern, lowered)), 'other')


def synchronize(device):
    if device == 'cuda':
        torch.cuda.synchronize()


class OpTimer:
    """Wall-clock time of every Triton op's forward and backward calls (the host's work for them), by op."""

    def __init__(self):
        self.calls = {}

    def __enter__(self):
        self.saved = []
        for op in KernelOp.every:
            for kind in ('forward', 'backward', 'backward_into'):
                original = getattr(op, kind, None)
                if original is None:
                    continue
                self.saved.append((op, kind, original))
                setattr(op, kind, self._timed(f'{op.name} {kind}', original))
        return self

    def __exit__(self, *exc):
        for op, kind, original in self.saved:
            setattr(op, kind, original)

    def _timed(self, key, fn):
        def timed(*args):
            start = time.perf_counter()
            out = fn(*args)
            entry = self.calls.setdefault(key, [0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - start
            return out
        return timed

    def table(self, iters):
        return [dict(op=key, calls=round(n / iters, 1), host_us=round(1e6 * total / n, 1))
                for key, (n, total) in sorted(self.calls.items())]


def profile_rows(step, device, iters, trace_path):
    """(name, self ms per iteration, calls per iteration) of every kernel (GPU) or op (CPU) that took time."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == 'cuda' else [])
    with profile(activities=activities) as prof:
        for _ in range(iters):
            step()
        synchronize(device)
    if trace_path:
        prof.export_chrome_trace(trace_path)
    rows = []
    for row in prof.key_averages():
        if device == 'cuda':  # the kernels' own rows (an op's row repeats the time of the kernels it launched)
            us = row.device_time_total if row.device_type == DeviceType.CUDA else 0
        else:
            us = row.self_cpu_time_total
        if us > 0:
            rows.append((row.key, us / 1e3 / iters, row.count / iters))
    if not rows:
        raise SystemExit('the profiler recorded no kernel or op times')
    return sorted(rows, key=lambda r: -r[1])


def python_profile(step, device, iters, top):
    """The ``top`` host functions and torch calls by own time (cProfile over ``iters`` steps): name, calls and
    own and cumulative ms per iteration."""
    import cProfile
    import pstats
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(iters):
        step()
    synchronize(device)
    profiler.disable()
    stats = sorted(pstats.Stats(profiler).stats.items(), key=lambda kv: -kv[1][2])[:top]
    return [dict(function=f'{os.path.basename(path)}:{line}({fn})' if line else fn, calls=round(calls / iters, 1),
                 own_ms=round(1e3 * own / iters, 3), cumulative_ms=round(1e3 * cumulative / iters, 3))
            for (path, line, fn), (_, calls, own, cumulative, _) in stats]


def plot(categories, title, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(categories)[::-1]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.barh(names, [categories[n] for n in names], color='tab:blue')
    ax.set(xlabel='ms per iteration', title=title)
    ax.grid(True, axis='x', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    args = parse_args()
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    height, width = map(int, args.size.split('x'))
    name = args.name or f'profile_{args.model}_{args.size}_{args.dtype}_{args.impl}'
    with forced_backend(IMPLS[args.impl][0]):
        model = MODELS.build(PROFILED_MODELS[args.model]).to(device).train()
        if IMPLS[args.impl][2]:
            from official_models import build_official
            model = build_official(args.model, model, args.official_mlla, args.official_vmamba).to(device).train()
        elif args.impl in MLLA_VARIANTS:
            model = MLLA_VARIANTS[args.impl][0](model)
        if IMPLS[args.impl][1]:
            model = torch.compile(model, mode=IMPLS[args.impl][1])
        x = torch.randn(args.batch, 3, height, width, device=device)
        forward, forward_backward = backbone_steps(model, x, args.dtype)
        step = forward if args.forward_only else forward_backward
        wall = time_ms(step)  # median, after warm-up calls
        with OpTimer() as timer:
            for _ in range(args.iters):
                step()
        os.makedirs(args.out, exist_ok=True)
        trace = os.path.join(args.out, f'{name}.trace.json') if args.trace else None
        rows = profile_rows(step, device, args.iters, trace)
        functions = python_profile(step, device, args.iters, args.top) if args.python_profile else None
    categories = {}
    for kernel, ms, _ in rows:
        categories[category(kernel)] = categories.get(category(kernel), 0.0) + ms
    categories = {k: round(v, 3) for k, v in sorted(categories.items(), key=lambda kv: -kv[1])}
    busy = sum(ms for _, ms, _ in rows)
    launches = round(sum(calls for _, _, calls in rows)) if device == 'cuda' else None
    host = timer.table(args.iters)
    top = [dict(name=k, ms=round(ms, 3), calls=round(calls, 1), category=category(k))
           for k, ms, calls in rows[:args.top]]
    record = dict(run_info(), model=args.model, impl=args.impl, dtype=args.dtype, batch=args.batch, height=height,
                  width=width, pass_='forward' if args.forward_only else 'forward+backward', iters=args.iters,
                  wall_ms=round(wall, 3), busy_ms=round(busy, 3), busy_fraction=round(busy / wall, 3),
                  time_basis='kernel time' if device == 'cuda' else 'self CPU time of ops',
                  launches_per_iter=launches, categories=categories, top=top, host_us_per_op_call=host)
    if functions:
        record['host_functions'] = functions
    write_json(os.path.join(args.out, f'{name}.json'), record)
    print_table([dict(category=k, ms=v, percent=round(100 * v / busy, 1)) for k, v in categories.items()],
                ['category', 'ms', 'percent'])
    print()
    print_table([dict(t, name=t['name'][:90]) for t in top], ['name', 'ms', 'calls', 'category'])
    if host:
        print()
        print_table(host, ['op', 'calls', 'host_us'])
    if functions:
        print()
        print_table([dict(f, function=f['function'][:90]) for f in functions],
                    ['function', 'calls', 'own_ms', 'cumulative_ms'])
    what = 'device busy' if device == 'cuda' else 'ops (self CPU time)'
    print(f'\n{what}: {busy:.2f} ms of {wall:.2f} ms wall per iteration ({100 * busy / wall:.0f}%)'
          + (f', {launches} kernel launches' if launches is not None else ''))
    plot(categories, f"{args.model} {args.size} B={args.batch} {args.dtype} {args.impl} {record['pass_']}: "
                     f'{busy:.1f} of {wall:.1f} ms busy', os.path.join(args.out, f'{name}.png'))


if __name__ == '__main__':
    main()
