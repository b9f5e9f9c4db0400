"""How many batch shapes a COCO-like training stream has, and how much padding each way of bounding them costs.

Draws a seeded stream of batches (mlla_dense/datasets/coco_size_stream.py: COCO-like aspect ratios, the
single-scale 1333x800 or the multi-scale + crop pipeline, portrait and landscape batched apart) and pads each
batch to its largest image rounded up to a size divisor (32 is mmdet's default, 64, 128, 256) or to the
smallest of N buckets that holds it (BucketedDetDataPreprocessor). Buckets are chosen greedily from another
stream (seed + 1) of the same pipeline, so the numbers are those of unseen batches: start from the bucket that
holds every batch, add the divisor-32 batch shape that removes the most padded pixels until there are N, then
swap single buckets for other observed shapes while that removes padding.
Prints, per pipeline and option: distinct shapes, padded pixels over the images' pixels (%), and the bucket
list; writes OUT/NAME.json and OUT/NAME.png.

    python tools/shape_buckets.py --pipelines single-scale ms-crop --num-buckets 4 8 12
"""
import argparse
import os

import numpy as np

from mlla_dense.datasets.coco_size_stream import PIPELINES, size_stream
from mlla_dense.models.data_preprocessors import bucket_shape
from mlla_dense.utils.benchmarking import print_table, run_info, write_json

DIVISORS = (32, 64, 128, 256)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--pipelines', nargs='+', default=list(PIPELINES), choices=PIPELINES)
    parser.add_argument('--num-buckets', nargs='+', type=int, default=[4, 8, 12])
    parser.add_argument('--batches', type=int, default=20000, help='batches per stream')
    parser.add_argument('--batch', type=int, default=2, help='images per batch')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='benchmarks/results')
    parser.add_argument('--name', default='shape_buckets')
    args = parser.parse_args(argv)
    if min(args.num_buckets) < 1 or args.batches < 1 or args.batch < 1:
        parser.error('--num-buckets, --batches and --batch must be positive')
    return args


def tight_shapes(batches, divisor: int) -> np.ndarray:
    """(num_batches, 2): each batch's largest height and width, rounded up to ``divisor``."""
    largest = np.stack([b.max(axis=0) for b in batches])
    return -(-largest // divisor) * divisor


def padded_shapes(batches, divisor: int = 32, buckets=()) -> np.ndarray:
    """(num_batches, 2): the size each batch is padded to (BucketedDetDataPreprocessor's rule)."""
    shapes, cache = [], {}
    for h, w in tight_shapes(batches, 32).tolist():
        if (h, w) not in cache:
            cache[h, w] = bucket_shape(h, w, buckets, divisor)
        shapes.append(cache[h, w])
    return np.array(shapes)


def choose_buckets(batches, num_buckets: int):
    """``num_buckets`` (H, W) sizes minimizing the padded pixels of ``batches``: greedy additions, then swaps
    of one bucket for another observed shape while that lowers the total (module doc)."""
    shapes, counts = np.unique(tight_shapes(batches, 32), axis=0, return_counts=True)
    cover = tuple(int(v) for v in shapes.max(axis=0))  # holds every batch: stays

    def padding(buckets):
        sizes = np.array(buckets)
        fits = (shapes[:, None, 0] <= sizes[None, :, 0]) & (shapes[:, None, 1] <= sizes[None, :, 1])
        best = np.where(fits, sizes[:, 0] * sizes[:, 1], np.inf).min(axis=1)
        return ((best - shapes[:, 0] * shapes[:, 1]) * counts).sum()

    candidates = [tuple(int(v) for v in s) for s in shapes]
    buckets = [cover]
    while len(buckets) < min(num_buckets, len(candidates)):
        buckets.append(min((s for s in candidates if s not in buckets), key=lambda s: padding(buckets + [s])))
    improved = True
    while improved:
        improved = False
        for i in range(1, len(buckets)):
            current = padding(buckets)
            for s in candidates:
                trial = buckets[:i] + [s] + buckets[i + 1:]
                if s not in buckets and padding(trial) < current:
                    buckets, current, improved = trial, padding(trial), True
    return sorted(buckets)


def summarize(batches, shapes) -> dict:
    """Distinct shapes and padding: padded pixels beyond the images' own, in % of the images' pixels."""
    image_pixels = sum(int((b[:, 0] * b[:, 1]).sum()) for b in batches)
    batch_pixels = int((shapes[:, 0] * shapes[:, 1]).sum()) * len(batches[0])
    distinct, counts = np.unique(shapes, axis=0, return_counts=True)
    order = np.argsort(-counts)
    return dict(distinct_shapes=len(distinct), padding_pct=round(100 * (batch_pixels / image_pixels - 1), 2),
                top_shapes=[[int(v) for v in distinct[i]] + [int(counts[i])] for i in order[:12]])


def evaluate(args, pipeline):
    batches = size_stream(args.batches, args.batch, pipeline, seed=args.seed)
    fit_on = size_stream(args.batches, args.batch, pipeline, seed=args.seed + 1)
    records = []
    for divisor in DIVISORS:
        records.append(dict(pipeline=pipeline, option=f'divisor {divisor}', divisor=divisor, buckets=None,
                            **summarize(batches, padded_shapes(batches, divisor))))
    for n in args.num_buckets:
        buckets = choose_buckets(fit_on, n)
        records.append(dict(pipeline=pipeline, option=f'{n} buckets', divisor=32, buckets=[list(b) for b in buckets],
                            **summarize(batches, padded_shapes(batches, 32, buckets))))
    return records


def plot(records, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    pipelines = sorted({r['pipeline'] for r in records}, key=PIPELINES.index)
    fig, axes = plt.subplots(1, len(pipelines), figsize=(6 * len(pipelines), 4.5), squeeze=False)
    for ax, pipeline in zip(axes[0], pipelines):
        rows = [r for r in records if r['pipeline'] == pipeline]
        for r in rows:
            ax.scatter(r['distinct_shapes'], r['padding_pct'], s=30)
            ax.annotate(r['option'], (r['distinct_shapes'], r['padding_pct']), fontsize=8,
                        xytext=(4, 4), textcoords='offset points')
        ax.axhline(10, color='grey', ls='--', lw=0.8)
        ax.set(xscale='log', xlabel='distinct batch shapes', ylabel='padded pixels / image pixels (%)',
               title=f"{pipeline} (batch {rows[0]['batch']})")
        ax.grid(True, which='both', alpha=0.3)
    fig.suptitle(f"COCO-like stream: shapes vs padding ({records[0]['date']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    args = parse_args(argv)
    info = run_info()
    records = []
    for pipeline in args.pipelines:
        records += [dict(r, batch=args.batch, batches=args.batches, seed=args.seed, date=info['date'],
                         command=info['command']) for r in evaluate(args, pipeline)]
    print_table(records, ['pipeline', 'option', 'distinct_shapes', 'padding_pct'])
    for r in records:
        if r['buckets']:
            print(f"{r['pipeline']} {r['option']}: {r['buckets']}")
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, f'{args.name}.json'), records)
    plot(records, os.path.join(args.out, f'{args.name}.png'))


if __name__ == '__main__':
    main()
