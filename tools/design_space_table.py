"""The MLLA paper's design-space study (arXiv 2405.16605, Table 1 and the forget gate's replacements) as a table
over the rows of configs/design_space/: per row the backbone's parameters and FLOPs at 224x224 (the paper's
columns), the parameters of its Mask R-CNN and UperNet, and, on a CUDA device, the backbone's throughput at
64x224x224 and 2x800x1344 (forward, CUDA-graph replay; also forward+backward), beside the paper's ImageNet-1K
numbers. What should reproduce is the ordering, not the absolute numbers (other GPU, other software). Writes
design_space.json and .png.

With ``--train``, a short shapes-demo training of every row instead (configs/design_space/shapes/: Mask R-CNN
then UperNet, from scratch: first and last logged training loss, box mAP and mIoU on shapes-val): a smoke
comparison that every row trains, not a result (minutes of CPU per row). Writes design_space_shapes.json and .png.

    python tools/design_space_table.py --out benchmarks/results            # params, FLOPs; throughput on a GPU
    python tools/design_space_table.py --train --out benchmarks/results    # the shapes smoke comparison
"""
import argparse
import os
import os.path as osp
import time

import torch
from mmengine.config import Config

from benchmark import backbone_steps
from demo import NO_VAL, SEG_CONFIG, config_for, det_options, evaluate, seg_schedule, train
from mlla_dense.datasets.shapes import ShapesConfig, write_shapes_dataset
from mlla_dense.utils.benchmarking import print_table, run_info, time_ms, write_json
from mlla_dense.utils.flops import backbone_complexity

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FOLDER = osp.join(ROOT, 'configs', 'design_space')
ROWS = {'baseline': 'linear attention (Swin-T)', 'input-gate': '+ input gate', 'forget-gate': '+ forget gate',
        'shortcut': '+ shortcut', 'no-norm': '- normalization', 'single-head': '- multi-head',
        'block-all': '+ block design all', 'block-sub': '+ block design sub', 'ape': 'gate -> APE',
        'lepe': 'gate -> LePE', 'cpe': 'gate -> CPE', 'rope': 'gate -> RoPE', 'mlla': 'MLLA-T'}
# The paper's ImageNet-1K numbers (params M, FLOPs G, throughput images/s, top-1 %): Table 1 of arXiv 2405.16605
# as the official repository shows it (LeapLabTHU/MLLA, figures/fig3_ablation.png); MLLA-T from that repository's
# README. None: not found in the sources at hand (the forget gate's positional-encoding replacements are the
# paper's Table 2; MLLA-T's throughput is in its speed figure).
PAPER = {'baseline': (28, 4.5, 1152, 77.6), 'input-gate': (29, 4.5, 1069, 77.8), 'forget-gate': (29, 4.8, 743, 78.4),
         'shortcut': (28, 4.5, 1066, 77.8), 'no-norm': (28, 4.5, 1215, 72.4), 'single-head': (24, 3.9, 1540, 73.5),
         'block-all': (28, 4.7, 915, 79.4), 'block-sub': (31, 4.8, 1010, 80.9), 'mlla': (25, 4.2, None, 83.5)}
SIZES = {'224x224': (64, 224, 224), '800x1344': (2, 800, 1344)}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='benchmarks/results', help='folder for the JSON and PNG')
    parser.add_argument('--rows', nargs='*', default=list(ROWS), choices=list(ROWS))
    parser.add_argument('--dtypes', nargs='*', default=['bf16', 'fp32'], choices=['bf16', 'fp32'],
                        help='throughput dtypes (bf16: autocast)')
    parser.add_argument('--train', action='store_true', help='the shapes smoke training instead of the table')
    parser.add_argument('--data', default='work_dirs/design_space/shapes', help='--train: dataset (made if absent)')
    parser.add_argument('--work-dir', default='work_dirs/design_space')
    parser.add_argument('--num-train', type=int, default=160)
    parser.add_argument('--num-val', type=int, default=40)
    parser.add_argument('--det-epochs', type=int, default=2)
    parser.add_argument('--seg-iters', type=int, default=100)
    return parser.parse_args()


def config(row: str, task: str) -> str:
    names = {'det': 'mask-rcnn_ds-{}_fpn_1x_coco.py', 'seg': 'upernet_ds-{}_8xb2-160k_ade20k-512x512.py',
             'det-shapes': 'shapes/mask-rcnn_ds-{}_fpn_demo_shapes.py',
             'seg-shapes': 'shapes/upernet_ds-{}_demo_shapes-96x96.py'}
    return osp.join(FOLDER, names[task].format(row))


def model_params(path: str) -> int:
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    return sum(p.numel() for p in registry.build(cfg.model).parameters())


def throughput(backbone_cfg: dict, dtypes) -> dict:
    """Backbone images/s per size and dtype: forward and forward+backward, CUDA-graph replays (device time), and
    the forward's wall clock (plain launches)."""
    from mmdet.registry import MODELS
    model = MODELS.build(dict(backbone_cfg, init_cfg=None)).cuda().train()
    result = {}
    for size, (batch, height, width) in SIZES.items():
        for dtype in dtypes:
            forward, forward_backward = backbone_steps(model, torch.randn(batch, 3, height, width, device='cuda'),
                                                       dtype)
            key = f'{size}_{dtype}'
            result[f'{key}_wall_img_s'] = round(batch / time_ms(forward) * 1e3, 1)
            try:
                result[f'{key}_img_s'] = round(batch / time_ms(forward, cuda_graph=True) * 1e3, 1)
                result[f'{key}_train_img_s'] = round(batch / time_ms(forward_backward, cuda_graph=True) * 1e3, 1)
            except RuntimeError as error:
                result[f'{key}_graph_error'] = str(error)[:300]
            model.zero_grad(set_to_none=True)
    del model
    torch.cuda.empty_cache()
    return result


def table(args):
    cuda = torch.cuda.is_available()
    if not cuda:
        print('GPU throughput: skipped (no CUDA device); parameters and FLOPs only', flush=True)
    records = []
    for row in args.rows:
        backbone = Config.fromfile(config(row, 'det')).model.backbone.to_dict()
        counts = backbone_complexity(backbone, 224, 224)
        record = dict(row=row, design=ROWS[row], params_m=round(counts['params'] / 1e6, 2),
                      flops_g=round(counts['flops'] / 1e9, 2),
                      det_params_m=round(model_params(config(row, 'det')) / 1e6, 2),
                      seg_params_m=round(model_params(config(row, 'seg')) / 1e6, 2))
        record.update(zip(('paper_params_m', 'paper_flops_g', 'paper_img_s', 'paper_top1'), PAPER.get(row, (None,) * 4)))
        if cuda:
            record.update(throughput(backbone, args.dtypes))
        records.append(record)
        print(record, flush=True)
    relative(records, 'paper_img_s')
    for dtype in args.dtypes if cuda else ():
        relative(records, f'224x224_{dtype}_img_s')
    columns = ['row', 'design', 'params_m', 'paper_params_m', 'flops_g', 'paper_flops_g', 'det_params_m',
               'seg_params_m'] + [c for c in records[0] if c.endswith('img_s') or c.endswith('_rel')] + ['paper_top1']
    print_table(records, list(dict.fromkeys(columns)))
    info = dict(run_info(), gpu_throughput='measured' if cuda else 'skipped: no CUDA device',
                flops='backbone at 224x224, fvcore convention (mlla_dense/utils/flops.py); gated rows as their '
                      'chunked computation runs')
    write_json(osp.join(args.out, 'design_space.json'), dict(info, records=records))
    plot_table(records, info, args.dtypes if cuda else (), osp.join(args.out, 'design_space.png'))


def relative(records, key):
    """Add ``key``_rel: the value over the baseline row's (the paper's claim is about this ordering)."""
    base = next((r.get(key) for r in records if r['row'] == 'baseline'), None)
    for r in records:
        r[f'{key}_rel'] = round(r[key] / base, 3) if base and r.get(key) else None


def plot_table(records, info, dtypes, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(15, 5))
    names = [r['row'] for r in records]
    x = range(len(records))
    # the paper first in both panels, so that each keeps its colour
    axes[0].bar([i - 0.2 for i in x], [r['paper_flops_g'] or 0 for r in records], 0.4, label='paper')
    axes[0].bar([i + 0.2 for i in x], [r['flops_g'] for r in records], 0.4, label='ours (backbone, 224x224)')
    axes[0].set(ylabel='GFLOPs', title='FLOPs')
    series = [('paper_img_s_rel', 'paper (ImageNet, its GPU)')] + [
        (f'224x224_{d}_img_s_rel', f'ours, 64x224x224 {d}') for d in dtypes]
    width = 0.8 / len(series)
    for k, (key, label) in enumerate(series):
        axes[1].bar([i - 0.4 + width * (k + 0.5) for i in x], [r.get(key) or 0 for r in records], width, label=label)
    axes[1].axhline(1.0, color='k', lw=0.8)
    axes[1].set(ylabel='throughput / baseline row', title='backbone throughput relative to the baseline' + (
        '' if dtypes else ' (ours: no CUDA device here)'))
    for ax in axes:
        ax.set_xticks(list(x), names, rotation=45, ha='right')
        ax.grid(True, axis='y', alpha=0.3)
        ax.legend()
    fig.suptitle(f'design space: {info["device"]}, {info["date"]}', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def smoke_training(args):
    if not osp.isdir(osp.join(args.data, 'annotations')):
        write_shapes_dataset(args.data, args.num_train, args.num_val, seed=0, cfg=ShapesConfig())
    det_opts = det_options(args, backbone=None)
    seg_opts = dict(NO_VAL, **seg_schedule(SEG_CONFIG, args.seg_iters))
    records = []
    for row in args.rows:
        record = dict(row=row, design=ROWS[row])
        for task, opts, metric in (('det', det_opts, 'coco/bbox_mAP'), ('seg', seg_opts, 'mIoU')):
            start = time.perf_counter()
            runner = train(config_for(config(row, f'{task}-shapes'), args, f'{row}/{task}', opts))
            losses = runner.message_hub.get_scalar('train/loss').data[0]  # the logged history
            record[f'{task}_loss_first'], record[f'{task}_loss_last'] = round(float(losses[0]), 3), round(
                float(losses[-1]), 3)
            value = float(evaluate(runner)[metric])
            record['box_mAP' if task == 'det' else 'mIoU'] = round(value if task == 'det' else value / 100, 4)
            record[f'{task}_seconds'] = round(time.perf_counter() - start, 1)
        records.append(record)
        print(record, flush=True)
    print_table(records, ['row', 'design', 'det_loss_first', 'det_loss_last', 'box_mAP', 'seg_loss_first',
                          'seg_loss_last', 'mIoU', 'det_seconds', 'seg_seconds'])
    info = dict(run_info(), note=f'smoke comparison, not a result: nano-size models trained from scratch for '
                                 f'{args.det_epochs} epochs ({args.num_train} images) and {args.seg_iters} '
                                 f'iterations on generated shapes, evaluated on {args.num_val} images',
                device_used='cuda' if torch.cuda.is_available() else 'cpu')
    write_json(osp.join(args.out, 'design_space_shapes.json'), dict(info, records=records))
    plot_training(records, info, osp.join(args.out, 'design_space_shapes.png'))


def plot_training(records, info, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(12, 4.5))
    x = range(len(records))
    ax.bar([i - 0.2 for i in x], [r['box_mAP'] for r in records], 0.4, label='box mAP (Mask R-CNN)')
    ax.bar([i + 0.2 for i in x], [r['mIoU'] for r in records], 0.4, label='mIoU (UperNet)')
    ax.set_xticks(list(x), [r['row'] for r in records], rotation=45, ha='right')
    ax.set(title=info['note'].upper(), ylabel='shapes-val')
    ax.title.set_fontsize(8)
    ax.grid(True, axis='y', alpha=0.3)
    ax.legend()
    fig.suptitle(f'{info["device_used"]}, {info["date"]}', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.train:
        smoke_training(args)
    else:
        table(args)


if __name__ == '__main__':
    main()
