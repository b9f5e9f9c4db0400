"""Backbone speed and memory on the GPU, side by side with the official implementations in one process.

For each model (MLLA-T/S/B, VMamba-T/S/B), input size (224x224 B=64, 512x512 B=8, 800x1344 B=2, 1600x2688 B=2)
and dtype (bf16 autocast, fp32), the implementations take turns, round after round, each timing one forward
(no_grad) and one forward+backward (sum of the outputs; gradients set to None before each, as a training step
does) with the device synchronized around the call (``--steps`` times one of them only; ``--consecutive`` runs
each implementation's rounds in a row instead; compiled implementations record their first call, which compiles,
as ``first_call_s``). What users get is that wall clock of eager calls: it
includes the host's work to launch every kernel. The rows report its median (and minimum) over the rounds after
``--warmup``, then the device time alone (the same calls replayed as a CUDA graph, for the eager
implementations), the peak memory a forward+backward adds, and each wall clock and device time as a ratio to the
official implementation's in the same run (wall clocks also as the median of the rounds' ratios, steadier where
the host drifts).

Implementations:
- ``official``: the authors' code (LeapLabTHU/MLLA's detection backbone, MzeroMiko/VMamba's ``Backbone_VSSM`` with
  its CUDA selective scan) from the checkouts given with ``--official-mlla`` / ``--official-vmamba``
  (tools/official_models.py), with the weights of ours; the row also reports how far its outputs are from ours;
- ``mlla_dense``: this package's backbone as users run it (Triton kernels, eager);
- ``official-compiled``, ``mlla_dense-compiled``: the same under ``torch.compile`` (default mode), and
  ``mlla_dense-reduce-overhead`` under ``torch.compile(mode='reduce-overhead')`` (CUDA graphs);
  two variants of MLLA under ``torch.compile``, each on a copy of the model: ``mlla_dense-compiled-fused``, its
  blocks as the fused block's custom ops (``compile_fused_blocks``) instead of op by op, and
  ``mlla_dense-compiled-stored``, its wide activations stored for the backward instead of recomputed there
  (``recompute_wide`` off), so that Inductor's partitioner alone decides what to recompute;
- ``eager-reference``: this package's PyTorch reference path (MLLA_DENSE_BACKEND=torch). VMamba's reference scan
  is a Python loop over positions, so it is left out for VMamba.

Writes OUT/NAME.json (a list of records, with the command, device and date) and OUT/NAME.png.

    python tools/benchmark.py --models mlla-t --sizes 800x1344 --dtypes bf16 \\
        --impls official mlla_dense --official-mlla ../MLLA
"""
import argparse
import json
import os
import statistics
import sys
import time
from copy import deepcopy
from typing import Optional

import torch

import mlla_dense  # noqa: F401  (registers the backbones)
from mlla_dense.kernels.backend import forced_backend
from mlla_dense.utils.benchmarking import print_table, run_info, time_ms, write_json
from mmdet.registry import MODELS

MODELS_TO_RUN = {
    'mlla-t': dict(type='MLLA', arch='tiny'), 'mlla-s': dict(type='MLLA', arch='small'),
    'mlla-b': dict(type='MLLA', arch='base'), 'vmamba-t': dict(type='VMamba', arch='tiny'),
    'vmamba-s': dict(type='VMamba', arch='small'), 'vmamba-b': dict(type='VMamba', arch='base'),
}
SIZES = {'224x224': (64, 224, 224), '512x512': (8, 512, 512), '800x1344': (2, 800, 1344),
         '1600x2688': (2, 1600, 2688)}
# implementation -> (kernel backend, torch.compile mode or None, official code?)
IMPLS = {'official': ('auto', None, True), 'official-compiled': ('auto', 'default', True),
         'mlla_dense': ('auto', None, False), 'mlla_dense-compiled': ('auto', 'default', False),
         'mlla_dense-compiled-fused': ('auto', 'default', False),
         'mlla_dense-compiled-stored': ('auto', 'default', False),
         'mlla_dense-reduce-overhead': ('auto', 'reduce-overhead', False), 'eager-reference': ('torch', None, False)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=['mlla-t'], choices=list(MODELS_TO_RUN))
    parser.add_argument('--sizes', nargs='+', default=['800x1344'], choices=list(SIZES))
    parser.add_argument('--dtypes', nargs='+', default=['bf16'], choices=['bf16', 'fp32'])
    parser.add_argument('--impls', nargs='+', default=['official', 'mlla_dense'], choices=list(IMPLS))
    parser.add_argument('--official-mlla', metavar='DIR', help='a clone of https://github.com/LeapLabTHU/MLLA')
    parser.add_argument('--official-vmamba', metavar='DIR', help='a clone of https://github.com/MzeroMiko/VMamba '
                        'with its selective_scan_cuda_oflex extension built')
    parser.add_argument('--rounds', type=int, default=12, help='rounds (one call of each step per implementation)')
    parser.add_argument('--warmup', type=int, default=3, help='rounds left out of the statistics')
    parser.add_argument('--consecutive', action='store_true',
                        help='all rounds of one implementation before the next, instead of alternating rounds '
                             '(shows what alternating costs a host-bound implementation: host caches)')
    parser.add_argument('--steps', nargs='+', default=['fwd', 'fwdbwd'], choices=['fwd', 'fwdbwd'],
                        help='calls to time; fwdbwd alone halves what torch.compile has to compile')
    parser.add_argument('--no-graphs', action='store_true', help='skip the device time (CUDA-graph replays)')
    parser.add_argument('--out', default='benchmarks/results')
    parser.add_argument('--name', default='backbones', help='stem of the JSON and PNG files')
    parser.add_argument('--append', action='store_true', help='add to an existing NAME.json')
    args = parser.parse_args(argv)
    if args.warmup >= args.rounds:
        parser.error(f'--warmup {args.warmup} leaves none of the {args.rounds} rounds')
    if any(IMPLS[i][2] for i in args.impls):
        for model in args.models:
            flag = '--official-mlla' if model.startswith('mlla') else '--official-vmamba'
            if getattr(args, flag[2:].replace('-', '_')) is None:
                parser.error(f'--impls {" ".join(args.impls)} includes the official code: give {flag} DIR '
                             f'for {model}')
    for impl in args.impls:
        for model in args.models:
            refusal = mlla_variant_refusal(impl, model)
            if refusal:
                parser.error(refusal)
    return args


def backbone_steps(model, x, dtype):
    """Closures of one forward (no_grad) and one forward+backward (sum of the outputs, gradients set to None
    first) of ``model`` on ``x``, under bfloat16 autocast for dtype 'bf16'."""
    # no autocast weight cache: a captured CUDA graph must not read casts freed after the capture
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=dtype == 'bf16', cache_enabled=False)
    params = [p for p in model.parameters() if p.requires_grad]

    def forward():
        with torch.no_grad(), autocast:
            model(x)

    def forward_backward():
        for p in params:
            p.grad = None
        with autocast:
            outs = model(x)
        sum(o.float().sum() for o in outs).backward()
    return forward, forward_backward


class Runner:
    """One implementation of one model, size and dtype: its module, steps and timings."""

    def __init__(self, impl, module, x, dtype):
        self.impl = impl
        self.backend, self.compile_mode, _ = IMPLS[impl]
        self.module = module
        runner = module
        if self.compile_mode:
            runner = torch.compile(module, mode=self.compile_mode)
        self.forward, self.forward_backward = backbone_steps(runner, x, dtype)
        self.times = {'fwd': [], 'fwdbwd': []}
        self.first_call_s = {}

    def call(self, step: str, keep: bool):
        fn = self.forward if step == 'fwd' else self.forward_backward
        with forced_backend(self.backend):
            if self.compile_mode == 'reduce-overhead':
                torch.compiler.cudagraph_mark_step_begin()
            torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            ms = (time.perf_counter() - start) * 1e3
        if keep:
            self.times[step].append(ms)
        self.first_call_s.setdefault(step, round(ms / 1e3, 1))

    def extras(self, graphs: bool, steps) -> dict:
        """Peak memory one forward+backward adds (not for reduce-overhead, whose graphs' memory pool is allocated
        before), and the CUDA-graph replay times of the eager implementations for ``steps``."""
        result = {}
        with forced_backend(self.backend):
            if self.compile_mode != 'reduce-overhead' and 'fwdbwd' in steps:
                torch.cuda.synchronize()
                before = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                self.forward_backward()
                torch.cuda.synchronize()
                result['peak_mb'] = round((torch.cuda.max_memory_allocated() - before) / 2 ** 20)
            if graphs and not self.compile_mode:
                try:
                    for step in steps:
                        fn = self.forward if step == 'fwd' else self.forward_backward
                        result[f'graph_{step}_ms'] = round(time_ms(fn, cuda_graph=True), 3)
                except RuntimeError as error:
                    result['graph_error'] = str(error)[:300]
                    print(f'{self.impl}: CUDA graph timing failed: {error}', flush=True)
        return result


def fused_blocks_when_compiled(model):
    """A copy of MLLA ``model`` whose blocks compile as the fused block's custom ops (compile_fused_blocks)."""
    copy = deepcopy(model)
    for block in (b for layer in copy.layers for b in layer.blocks):
        block.compile_fused = True
    return copy


def wide_activations_stored(model):
    """A copy of MLLA ``model`` built as with ``recompute_wide=False``: its blocks and downsamples store their wide
    activations for the backward instead of recomputing them there."""
    copy = deepcopy(model)
    for layer in copy.layers:
        for block in layer.blocks:
            block.recompute = False
        if layer.downsample is not None:
            layer.downsample.recompute_expansion = False
    return copy


# implementation -> (what it does to a copy of MLLA, what it is, for the refusal on other models)
MLLA_VARIANTS = {'mlla_dense-compiled-fused': (fused_blocks_when_compiled, "compiles MLLA's fused blocks"),
                 'mlla_dense-compiled-stored': (wide_activations_stored, "stores MLLA's recomputed activations")}


def mlla_variant_refusal(impl: str, model_name: str) -> Optional[str]:
    """Why ``impl`` cannot run ``model_name`` (an MLLA variant on another model), or None."""
    if impl in MLLA_VARIANTS and not model_name.startswith('mlla'):
        return f'--impl {impl} {MLLA_VARIANTS[impl][1]}; {model_name} is not an MLLA'
    return None


def build_runners(args, name, x, dtype):
    torch.manual_seed(0)
    ours = MODELS.build(MODELS_TO_RUN[name]).cuda().train()
    official = None
    runners = []
    for impl in args.impls:
        if impl == 'eager-reference' and name.startswith('vmamba'):
            print(f'skipping {name} eager-reference (a per-position Python loop)', flush=True)
            continue
        if IMPLS[impl][2]:
            if official is None:
                from official_models import build_official
                official = build_official(name, ours, args.official_mlla, args.official_vmamba)
            runners.append(Runner(impl, official, x, dtype))
        elif impl in MLLA_VARIANTS:
            runners.append(Runner(impl, MLLA_VARIANTS[impl][0](ours), x, dtype))
        else:
            runners.append(Runner(impl, ours, x, dtype))
    return ours, official, runners


def measure(args, name, size, dtype, info):
    batch, height, width = SIZES[size]
    x = torch.randn(batch, 3, height, width, device='cuda')
    ours, official, runners = build_runners(args, name, x, dtype)
    difference = None
    if official is not None:
        from official_models import output_difference
        with torch.autocast('cuda', dtype=torch.bfloat16, enabled=dtype == 'bf16'):
            difference = output_difference(ours, official, x)
    turns = ([(r, runner) for runner in runners for r in range(args.rounds)] if args.consecutive else
             [(r, runner) for r in range(args.rounds) for runner in runners])
    for r, runner in turns:
        for step in args.steps:
            runner.call(step, keep=r >= args.warmup)
            if r == 0 and runner.compile_mode:
                print(f'{runner.impl} {step}: first call (compiling) {runner.first_call_s[step]} s', flush=True)
        if runner is runners[-1] or args.consecutive:
            print(f'{name} {size} {dtype}: round {r + 1}/{args.rounds}' +
                  (f' of {runner.impl}' if args.consecutive else ''), flush=True)
    records = []
    for runner in runners:
        record = dict(model=name, impl=runner.impl, dtype=dtype, batch=batch, height=height, width=width)
        for step in args.steps:
            times = runner.times[step]
            record[f'{step}_ms'] = round(statistics.median(times), 2)
            record[f'{step}_min_ms'] = round(min(times), 2)
            record[f'{step}_times_ms'] = [round(t, 2) for t in times]
        if runner.compile_mode:
            record['first_call_s'] = runner.first_call_s
        record.update(runner.extras(not args.no_graphs, args.steps))
        if runner.impl.startswith('official') and difference is not None:
            record['max_rel_diff_to_mlla_dense'] = float(f'{difference:.3g}')
        record.update(device=info['device'], date=info['date'], command=info['command'], rounds=args.rounds,
                      warmup=args.warmup, order='consecutive' if args.consecutive else 'alternating')
        records.append(record)
    add_ratios(records)
    del runners, ours, official
    torch.cuda.empty_cache()
    return records


def add_ratios(records):
    """``*_vs_official``: each timing over the official implementation's in the same model, size, dtype: the
    compiled official one for compiled rows, the eager one for the others. ``*_paired_vs_official``: the median of
    the per-round ratios, where the rounds alternated (each pair ran back to back, so a host that drifts during
    the run moves both)."""
    def official(impl, r):
        return next((o for o in records if o['impl'] == impl and
                     all(o[k] == r[k] for k in ('model', 'dtype', 'batch', 'height', 'width'))), None)

    for r in records:
        if r['impl'].startswith('official'):
            continue
        compiled = IMPLS.get(r['impl'], (None, None))[1] is not None
        reference = (compiled and official('official-compiled', r)) or official('official', r)
        if reference is None:
            continue
        r['ratio_basis'] = reference['impl']
        for key in ('fwd_ms', 'fwdbwd_ms', 'graph_fwd_ms', 'graph_fwdbwd_ms'):
            if key in r and key in reference:
                r[key.replace('_ms', '_vs_official')] = round(r[key] / reference[key], 3)
        for step in ('fwd', 'fwdbwd'):
            ours, theirs = r.get(f'{step}_times_ms'), reference.get(f'{step}_times_ms')
            if ours and theirs and len(ours) == len(theirs) and r.get('order') == 'alternating':
                r[f'{step}_paired_vs_official'] = round(statistics.median(a / b for a, b in zip(ours, theirs)), 3)


def main(argv=None):
    args = parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit('benchmark.py times CUDA calls: it needs a GPU')
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    info = run_info()
    path = os.path.join(args.out, f'{args.name}.json')
    records = []
    if args.append and os.path.exists(path):
        with open(path) as f:
            records = json.load(f)
    for name in args.models:
        for size in args.sizes:
            for dtype in args.dtypes:
                records += measure(args, name, size, dtype, info)
                write_json(path, records)  # kept if a time limit stops the run
    print_table(records, ['model', 'impl', 'dtype', 'batch', 'height', 'width', 'fwd_ms', 'fwdbwd_ms',
                          'fwd_vs_official', 'fwdbwd_vs_official', 'fwd_paired_vs_official',
                          'fwdbwd_paired_vs_official', 'graph_fwd_ms', 'graph_fwdbwd_ms',
                          'graph_fwdbwd_vs_official', 'peak_mb'])
    plot(records, os.path.join(args.out, f'{args.name}.png'))


def plot(records, path):
    """Per model, size and dtype: wall clock (solid) and device time (hatched) of each implementation's
    forward+backward (its forward where only that was timed)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    groups = list(dict.fromkeys((r['model'], f"{r['height']}x{r['width']}", r['dtype']) for r in records))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 4.5), squeeze=False)
    for ax, (model, size, dtype) in zip(axes[0], groups):
        rows = [r for r in records if (r['model'], f"{r['height']}x{r['width']}", r['dtype']) == (model, size, dtype)]
        step = 'fwdbwd' if any('fwdbwd_ms' in r for r in rows) else 'fwd'
        for i, r in enumerate(rows):
            ax.bar(i - 0.2, r.get(f'{step}_ms', 0), 0.4, color=f'C{i}', label=r['impl'])
            if f'graph_{step}_ms' in r:
                ax.bar(i + 0.2, r[f'graph_{step}_ms'], 0.4, color=f'C{i}', alpha=0.4, hatch='//')
        ax.set_xticks(range(len(rows)), [r['impl'] for r in rows], rotation=30, ha='right', fontsize=7)
        ax.set(ylabel=f'ms per {"forward+backward" if step == "fwdbwd" else "forward"}',
               title=f'{model} {size} {dtype}\nwall clock (solid), device (hatched)')
        ax.grid(True, axis='y', alpha=0.3)
    if records:
        fig.suptitle(f"{records[-1]['device']}, {records[-1]['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == '__main__':
    main()
