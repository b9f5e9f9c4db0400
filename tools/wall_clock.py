"""Wall-clock time of a backbone's calls from Python, the implementations interleaved in one process.

Eager backbones of many small kernels are bound by the host's launch rate, and device machines' hosts differ
and drift (the same call varied by 1.5x between runs). Alternating the implementations call by call exposes
them to the same host conditions, so their ratio holds where the absolute numbers do not. Each round times one
forward (no_grad) and one forward+backward per implementation, synchronizing around every call; the first
``--warmup`` rounds are left out. Prints medians and minima and writes NAME.json.

    python tools/wall_clock.py --model mlla-t --size 800x1344 --dtype bf16
"""
import argparse
import os
import statistics
import time

import torch

import mlla_dense  # noqa: F401  (registers the backbones)
from mlla_dense.kernels.backend import forced_backend
from mlla_dense.utils.benchmarking import print_table, run_info, write_json
from mmdet.registry import MODELS

from benchmark import IMPLS, MODELS_TO_RUN, SIZES, backbone_steps


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='mlla-t', choices=list(MODELS_TO_RUN))
    parser.add_argument('--size', default='800x1344', choices=list(SIZES))
    parser.add_argument('--dtype', default='bf16', choices=['bf16', 'fp32'])
    parser.add_argument('--impls', nargs='+', default=['mlla_dense', 'eager-reference'],
                        choices=['mlla_dense', 'eager-reference'])
    parser.add_argument('--rounds', type=int, default=8)
    parser.add_argument('--warmup', type=int, default=2, help='rounds left out')
    parser.add_argument('--out', default='benchmarks/results')
    parser.add_argument('--name', help='stem of the output file (default: wall_clock_MODEL_SIZE_DTYPE)')
    return parser.parse_args()


def timed(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def main():
    args = parse_args()
    if not torch.cuda.is_available():
        raise SystemExit('wall_clock.py times CUDA launches: it needs a GPU')
    if args.warmup >= args.rounds:
        raise SystemExit(f'--warmup {args.warmup} leaves none of the {args.rounds} rounds')
    batch, height, width = SIZES[args.size]
    model = MODELS.build(MODELS_TO_RUN[args.model]).cuda().train()
    forward, forward_backward = backbone_steps(model, torch.randn(batch, 3, height, width, device='cuda'),
                                               args.dtype)
    times = {(impl, step): [] for impl in args.impls for step in ('fwd', 'fwdbwd')}
    for r in range(args.rounds):
        for impl in args.impls:
            with forced_backend(IMPLS[impl]):
                for step, fn in (('fwd', forward), ('fwdbwd', forward_backward)):
                    ms = timed(fn)
                    if r >= args.warmup:
                        times[impl, step].append(ms)
        print(f'round {r + 1}/{args.rounds}', flush=True)
    records = [dict(model=args.model, impl=impl, dtype=args.dtype, batch=batch, height=height, width=width,
                    step=step, median_ms=round(statistics.median(v), 1), min_ms=round(min(v), 1), calls=len(v))
               for (impl, step), v in times.items()]
    print_table(records, ['model', 'impl', 'dtype', 'step', 'median_ms', 'min_ms', 'calls'])
    name = args.name or f'wall_clock_{args.model}_{args.size}_{args.dtype}'
    write_json(os.path.join(args.out, f'{name}.json'), dict(run_info(), records=records))


if __name__ == '__main__':
    main()
