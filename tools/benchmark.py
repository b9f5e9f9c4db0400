"""Backbone speed and memory on the GPU: forward, forward+backward and peak memory.

For each model (MLLA-T/S/B, VMamba-T/S/B), input size (224x224 B=64,
512x512 B=8, 800x1344 B=2), dtype (bf16 autocast, fp32) and implementation ('mlla_dense': the default path
with the Triton kernels; 'mlla_dense-compiled': the same under torch.compile, compiled afresh per input size;
'eager-reference': MLLA_DENSE_BACKEND=torch), times one forward and one
forward+backward (sum of outputs), records the peak allocated memory of the forward+backward, and writes
benchmarks/results/backbones.json (a list of records) and backbones.png (throughput vs resolution).
``fwd_ms`` / ``fwdbwd_ms`` are wall-clock per call: for an eager model of many small kernels they include the
host's launch time. The eager implementations are also timed as CUDA-graph replays (``graph_fwd_ms`` /
``graph_fwdbwd_ms``): the device's time alone, what a host that keeps ahead of the GPU would see.
VMamba's 'eager-reference' is its specification, a Python loop over every position, not a speed baseline: it is
skipped (the baseline to compare with is the official CUDA kernel, measured elsewhere).

    python tools/benchmark.py --out benchmarks/results
    python tools/benchmark.py --models mlla-t --sizes 800x1344 --dtypes bf16
"""
import argparse
import json
import os

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
SIZES = {'224x224': (64, 224, 224), '512x512': (8, 512, 512), '800x1344': (2, 800, 1344)}
IMPLS = {'mlla_dense': 'auto', 'mlla_dense-compiled': 'auto', 'eager-reference': 'torch'}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='benchmarks/results')
    parser.add_argument('--models', nargs='*', default=list(MODELS_TO_RUN), choices=list(MODELS_TO_RUN))
    parser.add_argument('--sizes', nargs='*', default=list(SIZES), choices=list(SIZES))
    parser.add_argument('--dtypes', nargs='*', default=['bf16', 'fp32'], choices=['bf16', 'fp32'])
    parser.add_argument('--impls', nargs='*', default=['mlla_dense', 'eager-reference'], choices=list(IMPLS))
    parser.add_argument('--append', action='store_true', help='add to an existing backbones.json')
    return parser.parse_args()


def backbone_steps(model, x, dtype):
    """Closures of one forward (no_grad) and one forward+backward (sum of the outputs) of ``model`` on ``x``,
    under bfloat16 autocast for dtype 'bf16'."""
    # no autocast weight cache: a captured CUDA graph must not read casts freed after the capture
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=dtype == 'bf16', cache_enabled=False)

    def forward():
        with torch.no_grad(), autocast:
            model(x)

    def forward_backward():
        with autocast:
            outs = model(x)
        sum(o.float().sum() for o in outs).backward()
    return forward, forward_backward


def bench_one(model, batch, height, width, dtype, graphs):
    """Times in ms and peak MB; with ``graphs`` also the CUDA-graph replay times (or the capture's error)."""
    forward, forward_backward = backbone_steps(model, torch.randn(batch, 3, height, width, device='cuda'), dtype)
    fwd = time_ms(forward)
    model.zero_grad(set_to_none=True)
    torch.cuda.reset_peak_memory_stats()
    fwdbwd = time_ms(forward_backward)
    result = dict(fwd_ms=round(fwd, 2), fwdbwd_ms=round(fwdbwd, 2),
                  peak_mb=round(torch.cuda.max_memory_allocated() / 2 ** 20))
    model.zero_grad(set_to_none=True)
    if graphs:
        try:
            result['graph_fwd_ms'] = round(time_ms(forward, cuda_graph=True), 2)
            result['graph_fwdbwd_ms'] = round(time_ms(forward_backward, cuda_graph=True), 2)
        except RuntimeError as error:
            result['graph_error'] = str(error)[:300]
            print(f'CUDA graph timing failed: {error}', flush=True)
        model.zero_grad(set_to_none=True)
    return result


def main():
    args = parse_args()
    info = run_info()
    path = os.path.join(args.out, 'backbones.json')
    records = []
    if args.append and os.path.exists(path):
        with open(path) as f:
            records = json.load(f)
    for name in args.models:
        model = MODELS.build(MODELS_TO_RUN[name]).cuda().train()
        for size in args.sizes:
            batch, height, width = SIZES[size]
            for dtype in args.dtypes:
                for impl in args.impls:
                    if impl == 'eager-reference' and name.startswith('vmamba'):
                        print(f'skipping {name} eager-reference (a per-position Python loop)', flush=True)
                        continue
                    runner = model
                    if impl == 'mlla_dense-compiled':
                        torch._dynamo.reset()  # a fresh compilation per size, never past the recompile limit
                        runner = torch.compile(model, dynamic=False)
                    with forced_backend(IMPLS[impl]):
                        timings = bench_one(runner, batch, height, width, dtype, graphs=runner is model)
                    records.append(dict(model=name, impl=impl, dtype=dtype, batch=batch, height=height,
                                        width=width, **timings, device=info['device'], date=info['date'],
                                        command=info['command']))
                    print(json.dumps(records[-1]), flush=True)
                    write_json(path, records)  # kept if a time limit stops the run
        del model
        torch.cuda.empty_cache()
    print_table(records, ['model', 'impl', 'dtype', 'batch', 'height', 'width', 'fwd_ms', 'fwdbwd_ms',
                          'graph_fwd_ms', 'graph_fwdbwd_ms', 'peak_mb'])
    plot(records, os.path.join(args.out, 'backbones.png'))


def plot(records, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, dtype in zip(axes, ('bf16', 'fp32')):
        for model in dict.fromkeys(r['model'] for r in records):
            for impl, style in (('mlla_dense', 'o-'), ('mlla_dense-compiled', 's-.'), ('eager-reference', 'x--')):
                pts = sorted((r for r in records if r['model'] == model and r['impl'] == impl
                              and r['dtype'] == dtype), key=lambda r: r['height'] * r['width'])
                if pts:
                    # device time (CUDA-graph replay) where it was measured: wall clock is the host's launch rate
                    wall = any('graph_fwd_ms' not in r for r in pts)
                    ax.plot([f"{r['height']}x{r['width']}" for r in pts],
                            [1e3 * r['batch'] / (r['fwd_ms'] if wall else r['graph_fwd_ms']) for r in pts], style,
                            label=f"{model} {impl}{' (wall clock)' if wall else ''}")
        ax.set(yscale='log', xlabel='input resolution', ylabel='images / s (forward, device time)',
               title=f'backbone inference throughput, {dtype}')
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    if records:
        fig.suptitle(f"{records[-1]['device']}, {records[-1]['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == '__main__':
    main()
