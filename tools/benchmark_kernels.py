"""Benchmark the MLLA linear-attention kernel: eager reference vs torch.compile(reference) vs Triton.

Forward and forward+backward at the MLLA-T stage shapes of a 2x3x800x1344 input and stage 1 of 8x512x512
and 64x224x224; reports ms, achieved GB/s and % of the HBM roofline (bytes that must move: read q, k, v
and write the output forward; plus read dO, q, k, v and write dq, dk, dv backward), and writes
benchmarks/results/linear_attention.json and a PNG (time vs tokens, with the roofline).

Times are CUDA-graph replays (device time, as the kernels run inside a model where the CPU runs ahead);
``eager_ms`` also records plain launches from Python, which include the CPU's launch overhead.

    python tools/benchmark_kernels.py --out benchmarks/results
"""
import argparse
import os

import torch

from mlla_dense.kernels.linear_attention import linear_attention_reference
from mlla_dense.kernels.linear_attention.op import linear_attention_triton
from mlla_dense.utils.benchmarking import copy_bandwidth_gbs, print_table, run_info, time_ms, write_json

# (name, B, H, W, C, heads)
SHAPES = [('800x1344 stage1', 2, 200, 336, 64, 2), ('800x1344 stage2', 2, 100, 168, 128, 4),
          ('800x1344 stage3', 2, 50, 84, 256, 8), ('800x1344 stage4', 2, 25, 42, 512, 16),
          ('8x512x512 stage1', 8, 128, 128, 64, 2), ('64x224x224 stage1', 64, 56, 56, 64, 2)]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='benchmarks/results', help='folder for the JSON and PNG')
    parser.add_argument('--dtype', default='bfloat16', choices=['bfloat16', 'float16', 'float32'])
    parser.add_argument('--no-compile', action='store_true', help='skip the torch.compile baseline')
    parser.add_argument('--shapes', type=int, nargs='*', help='indices into the shape list (default: all)')
    return parser.parse_args()


def measure(fn, inputs, backward):
    """(CUDA-graph ms, plain-launch ms) of the forward or forward+backward."""
    qk, v, hw, heads, weight, bias = inputs
    if not backward:
        def step():
            with torch.no_grad():
                fn(qk, v, hw, heads, weight, bias)
    else:
        leaves = [t.detach().requires_grad_() for t in (qk, v, weight, bias)]
        grad = torch.randn_like(v)

        def step():
            out = fn(leaves[0], leaves[1], hw, heads, leaves[2], leaves[3])
            torch.autograd.grad(out, leaves, grad)
    return time_ms(step, cuda_graph=True), time_ms(step)


def main():
    args = parse_args()
    dtype = getattr(torch, args.dtype)
    elem = torch.finfo(dtype).bits // 8
    bandwidth = copy_bandwidth_gbs()
    records = []
    shapes = [SHAPES[i] for i in args.shapes] if args.shapes else SHAPES
    for name, b, h, w, c, heads in shapes:
        impls = {'eager': linear_attention_reference, 'triton': linear_attention_triton}
        if not args.no_compile:
            # a fresh compilation per shape: past dynamo's recompile limit (8) the reference would silently run eager
            torch._dynamo.reset()
            impls['compile'] = torch.compile(linear_attention_reference, dynamic=False)
        n = h * w
        gen = torch.Generator(device='cuda').manual_seed(0)
        qk = torch.randn(b, n, 2 * c, device='cuda', dtype=dtype, generator=gen)
        v = torch.randn(b, n, c, device='cuda', dtype=dtype, generator=gen)
        weight = torch.randn(c, 1, 3, 3, device='cuda', generator=gen) * 0.3
        bias = torch.randn(c, device='cuda', generator=gen)
        inputs = (qk, v, (h, w), heads, weight, bias)
        for backward, pass_name, tensors in ((False, 'forward', 4), (True, 'forward+backward', 11)):
            n_bytes = tensors * b * n * c * elem
            roofline_ms = n_bytes / (bandwidth * 1e9) * 1e3
            for impl, fn in impls.items():
                ms, eager_ms = measure(fn, inputs, backward)
                records.append(dict(shape=name, B=b, H=h, W=w, C=c, heads=heads, tokens=b * n, dtype=args.dtype,
                                    impl=impl, pass_=pass_name, ms=round(ms, 4), eager_ms=round(eager_ms, 4),
                                    gbs=round(n_bytes / (ms * 1e-3) / 1e9, 1),
                                    roofline_ms=round(roofline_ms, 4), pct_roofline=round(100 * roofline_ms / ms, 1)))
                print(f'{name:20s} {pass_name:17s} {impl:8s} {ms * 1e3:9.1f} us (plain launches '
                      f'{eager_ms * 1e3:.1f} us)', flush=True)
    for r in records:
        base = {x['impl']: x['ms'] for x in records if x['shape'] == r['shape'] and x['pass_'] == r['pass_']}
        r['speedup_vs_eager'] = round(base['eager'] / r['ms'], 2)
        if 'compile' in base:
            r['speedup_vs_compile'] = round(base['compile'] / r['ms'], 2)
    print_table([dict(r, us=round(r['ms'] * 1e3, 1), launch_us=round(r['eager_ms'] * 1e3, 1)) for r in records],
                ['shape', 'pass_', 'impl', 'us', 'launch_us', 'gbs', 'pct_roofline', 'speedup_vs_eager',
                 'speedup_vs_compile'])
    info = dict(run_info(), copy_bandwidth_gbs=round(bandwidth, 1))
    write_json(os.path.join(args.out, 'linear_attention.json'), dict(info, records=records))
    plot(records, info, os.path.join(args.out, 'linear_attention.png'))


def plot(records, info, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, pass_name in zip(axes, ('forward', 'forward+backward')):
        rows = sorted((r for r in records if r['pass_'] == pass_name), key=lambda r: r['tokens'] * r['C'])
        for impl in dict.fromkeys(r['impl'] for r in rows):
            pts = [r for r in rows if r['impl'] == impl]
            ax.plot([r['tokens'] * r['C'] for r in pts], [r['ms'] * 1e3 for r in pts], 'o-', label=impl)
        ax.plot([r['tokens'] * r['C'] for r in rows], [r['roofline_ms'] * 1e3 for r in rows], 'k--',
                label='HBM roofline')
        ax.set(xscale='log', yscale='log', xlabel='B x N x C (elements per tensor)', ylabel='time (us)',
               title=f'MLLA linear attention, {pass_name}, {rows[0]["dtype"]}')
        ax.grid(True, which='both', alpha=0.3)
        ax.legend()
    fig.suptitle(f'{info["device"]}, {info["date"]}', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == '__main__':
    main()
