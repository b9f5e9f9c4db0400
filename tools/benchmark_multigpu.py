"""Multi-GPU scaling of a training config: seconds per iteration, images/s and peak memory of
tools/train.py without a launcher and of tools/dist_train.sh on 1..N GPUs (optionally with SyncBN), and the
scaling efficiency, N-GPU images/s / (N x 1-GPU images/s). Writes NAME.json and NAME.png.

Every run trains the config for ``--iters`` iterations (an iteration-based loop, no validation, no
checkpoints, every iteration logged) and is read back from mmengine's scalars.json; the first ``--warmup``
iterations are left out. Without GPUs the processes are CPU processes (gloo): that checks the tool, not the speed.

    python tools/make_shapes.py --out data/shapes --num-train 400 --num-val 4 --min-size 600 --max-size 1000
    python tools/benchmark_multigpu.py configs/shapes/mask-rcnn_mlla-t_fpn_speed_shapes-1333x800.py --gpus 1 2 --sync-bn
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

import torch

from mlla_dense.utils.benchmarking import print_table, run_info, write_json
from mlla_dense.utils.run_config import DictAction, load_config

TOOLS = osp.dirname(osp.abspath(__file__))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='training config (mmdet or mmseg)')
    parser.add_argument('--gpus', type=int, nargs='+', default=[1, 2], help='process counts for dist_train.sh')
    parser.add_argument('--sync-bn', action='store_true', help='also run every count above 1 with SyncBN')
    parser.add_argument('--iters', type=int, default=60, help='training iterations per run')
    parser.add_argument('--warmup', type=int, default=10, help='iterations left out of the timing')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries before the timing settings, e.g. the data root')
    parser.add_argument('--work-dir', default='work_dirs/benchmark_multigpu')
    parser.add_argument('--out', default='benchmarks/results')
    parser.add_argument('--name', default='multigpu', help='stem of the JSON and PNG files')
    args = parser.parse_args()
    if args.warmup >= args.iters:
        parser.error(f'--warmup ({args.warmup}) must be below --iters ({args.iters})')
    if min(args.gpus) < 1 or 1 not in args.gpus:
        parser.error('--gpus must include 1 (the baseline of the scaling efficiency) and be positive')
    if args.sync_bn and not torch.cuda.is_available():
        parser.error('--sync-bn needs GPUs (torch.nn.SyncBatchNorm has no CPU implementation)')
    return args


def timing_config(args, sync_bn, path):
    """The config with a fixed number of iterations, per-iteration logs and nothing else running."""
    cfg = load_config(args.config, args.cfg_options, None)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=args.iters)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.param_scheduler = [s for s in cfg.get('param_scheduler', []) if not s.get('by_epoch', True)]
    cfg.log_processor = dict(type='LogProcessor', window_size=1, by_epoch=False)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=args.iters + 1, by_epoch=False,
                                        save_last=False)
    cfg.randomness = dict(seed=0)
    if sync_bn:
        cfg.sync_bn = 'torch'
    cfg.dump(path)
    return cfg.train_dataloader.batch_size


def logged_iterations(work_dir):
    """Per-iteration scalars of the newest run in ``work_dir``."""
    runs = sorted(d for d in glob.glob(osp.join(work_dir, '2*')) if osp.isdir(d))
    if not runs:
        return []
    with open(osp.join(runs[-1], 'vis_data', 'scalars.json')) as f:
        return [r for r in map(json.loads, f) if 'time' in r]


def run_one(args, launcher, processes, sync_bn):
    name = 'train.py' if launcher == 'none' else f'dist_train.sh x{processes}' + (' SyncBN' if sync_bn else '')
    work = osp.join(args.work_dir, name.replace(' ', '_').replace('.', '_'))
    os.makedirs(work, exist_ok=True)
    cfg_path = osp.join(work, 'timing_config.py')
    batch = timing_config(args, sync_bn, cfg_path)
    if launcher == 'none':
        cmd = [sys.executable, osp.join(TOOLS, 'train.py'), cfg_path, '--work-dir', work]
    else:
        cmd = ['bash', osp.join(TOOLS, 'dist_train.sh'), cfg_path, str(processes), '--work-dir', work]
    print(f'[{name}] {" ".join(cmd)}', flush=True)
    start = time.perf_counter()
    with open(osp.join(work, 'output.log'), 'w') as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHON=sys.executable))
    logged = logged_iterations(work)
    if code != 0 or len(logged) < args.iters:
        raise SystemExit(f'[{name}] failed (exit {code}, {len(logged)} of {args.iters} iterations logged); '
                         f'see {osp.join(work, "output.log")}')
    timed = logged[args.warmup:]
    seconds = statistics.median(r['time'] for r in timed)
    losses = [r['loss'] for r in logged]
    memory = [r['memory'] for r in logged if 'memory' in r]
    record = dict(run=name, launcher=launcher, processes=processes, sync_bn=sync_bn, batch_per_process=batch,
                  iters=args.iters, warmup=args.warmup, s_per_iter=round(seconds, 4),
                  s_per_iter_mean=round(statistics.mean(r['time'] for r in timed), 4),
                  data_s_per_iter=round(statistics.median(r['data_time'] for r in timed), 4),
                  images_per_s=round(batch * processes / seconds, 2),
                  peak_mb_per_gpu=max(memory) if memory else None,
                  nonfinite_losses=sum(not math.isfinite(v) for v in losses), final_loss=round(losses[-1], 4),
                  wall_s=round(time.perf_counter() - start, 1))
    print(f'[{name}] {record["s_per_iter"]} s/iter, {record["images_per_s"]} images/s, '
          f'peak {record["peak_mb_per_gpu"]} MB per GPU', flush=True)
    return record


def summarize(records):
    """Scaling efficiency of every dist_train.sh run against dist_train.sh on one process (same SyncBN setting
    where there is one, else plain), and the launcher's cost on one process against train.py."""
    one = {r['sync_bn']: r for r in records if r['launcher'] == 'pytorch' and r['processes'] == 1}
    for r in records:
        if r['launcher'] == 'pytorch':
            base = one.get(r['sync_bn'], one.get(False))
            r['scaling_efficiency'] = round(r['images_per_s'] / (r['processes'] * base['images_per_s']), 3)
    plain = [r for r in records if r['launcher'] == 'none']
    if plain and False in one:
        return dict(launcher_overhead_1gpu=round(one[False]['s_per_iter'] / plain[0]['s_per_iter'] - 1, 3))
    return {}


def plot(records, info, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = [r['run'] for r in records]
    ax.bar(names, [r['images_per_s'] for r in records], color='tab:blue', label='measured')
    base = next((r for r in records if r['launcher'] == 'pytorch' and r['processes'] == 1), None)
    if base:
        ax.plot(names, [base['images_per_s'] * r['processes'] for r in records], 'k_', markersize=40,
                markeredgewidth=2, label='linear scaling from 1 process')
    ax.set(ylabel='training images / s', title=f"{info['config']}, {info['device']}, {info['date']}")
    ax.legend(loc='lower right', markerscale=0.3)
    ax.tick_params(axis='x', labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    args = parse_args()
    runs = [('none', 1, False)] + [('pytorch', n, False) for n in sorted(set(args.gpus))]
    if args.sync_bn:
        runs += [('pytorch', n, True) for n in sorted(set(args.gpus)) if n > 1]
    records = [run_one(args, *run) for run in runs]
    info = dict(run_info(), config=osp.basename(args.config), gpus=torch.cuda.device_count())
    summary = summarize(records)
    write_json(osp.join(args.out, f'{args.name}.json'), dict(info, **summary, records=records))
    print_table(records, ['run', 's_per_iter', 'data_s_per_iter', 'images_per_s', 'peak_mb_per_gpu',
                          'scaling_efficiency', 'nonfinite_losses'])
    if summary:
        print(f"dist_train.sh on 1 process vs train.py: {100 * summary['launcher_overhead_1gpu']:+.1f}% s/iter")
    plot(records, info, osp.join(args.out, f'{args.name}.png'))
    if any(r['nonfinite_losses'] for r in records):
        raise SystemExit('non-finite losses: ' + ', '.join(r['run'] for r in records if r['nonfinite_losses']))


if __name__ == '__main__':
    main()
