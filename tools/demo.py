"""The embedded demo (README's first command, `make demo`): generated data -> train -> evaluate -> visualize.

Generates data/shapes if absent, trains Mask R-CNN with an MLLA-nano backbone from scratch, then UperNet
starting from that backbone (as one fine-tunes a pretrained backbone; --seg-from-scratch to not), evaluates
them on shapes-val (COCO box/mask mAP through pycocotools; mIoU), draws predictions of a few val images into
work_dirs/demo/vis/, prints a summary table (metrics and wall time per stage), writes it to
work_dirs/demo/summary.json and exits non-zero if any stage failed.

    python tools/demo.py                     # everything, on the CPU in minutes
    python tools/demo.py --det-epochs 24     # train longer (e.g. on a GPU)
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
import traceback

import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mlla_dense.datasets.shapes import ShapesConfig, write_shapes_dataset
from mlla_dense.utils.drawing import write_visualizations
from mlla_dense.utils.run_config import check_data, load_config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DET_CONFIG = osp.join(ROOT, 'configs/shapes/mask-rcnn_mlla-nano_fpn_demo_shapes.py')
SEG_CONFIG = osp.join(ROOT, 'configs/shapes/upernet_mlla-nano_demo_shapes-96x96.py')
TARGETS = {'box mAP': 0.5, 'mask mAP': 0.45, 'mIoU': 0.6}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', default='data/shapes', help='dataset folder (generated when absent)')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--num-train', type=int, default=1000)
    parser.add_argument('--num-val', type=int, default=100)
    parser.add_argument('--det-epochs', type=int, help='override the detection config\'s epochs')
    parser.add_argument('--seg-iters', type=int, help='override the segmentation config\'s iterations (>= 2)')
    parser.add_argument('--seg-from-scratch', action='store_true',
                        help='do not start UperNet from the backbone of the trained Mask R-CNN')
    parser.add_argument('--num-vis', type=int, default=4, help='val images to draw')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args()
    if args.seg_iters is not None and args.seg_iters < 2:
        parser.error('--seg-iters must be at least 2 (one warm-up and one decay iteration)')
    if args.det_epochs is not None and args.det_epochs < 1:
        parser.error('--det-epochs must be at least 1')
    return args


class Stages:
    """Runs named stages, timing them and recording failures instead of stopping at the first."""

    def __init__(self):
        self.rows = []

    def run(self, name, fn, *args):
        print(f'\n=== {name} ===', flush=True)
        start = time.perf_counter()
        # every failing stage is reported, then the demo exits non-zero; SystemExit is how the tools stop with
        # a clear message (e.g. a missing dataset)
        try:
            result = fn(*args)
            status = 'ok'
        except (Exception, SystemExit):  # noqa: BLE001
            traceback.print_exc()
            result, status = None, 'FAILED'
        self.rows.append(dict(stage=name, status=status, seconds=round(time.perf_counter() - start, 1)))
        return result

    @property
    def failed(self):
        return any(r['status'] != 'ok' for r in self.rows)


def seg_schedule(iters):
    """Options that fit the UperNet schedule (linear warm-up, then poly decay) to ``iters`` iterations; the
    warm-up shrinks to half of a run shorter than twice its length."""
    warmup = min(Config.fromfile(SEG_CONFIG).param_scheduler[0]['end'], iters // 2)
    return {'train_cfg.max_iters': iters, 'param_scheduler.0.end': warmup, 'param_scheduler.1.begin': warmup,
            'param_scheduler.1.end': iters, 'default_hooks.checkpoint.interval': iters}


def make_data(args):
    if osp.isdir(osp.join(args.data, 'annotations')):
        print(f'using the existing dataset in {args.data}')
        return
    write_shapes_dataset(args.data, args.num_train, args.num_val, seed=0, cfg=ShapesConfig(),
                         progress=lambda split, done, total: done % 250 == 0 and print(
                             f'{split}: {done}/{total}', flush=True))


def config_for(path, args, name, options):
    root = args.data.rstrip('/') + '/'
    opts = {f'{s}_dataloader.dataset.data_root': root for s in ('train', 'val', 'test')}
    if 'mask-rcnn' in path:
        ann = root + 'annotations/instances_val.json'
        opts.update({'val_evaluator.ann_file': ann, 'test_evaluator.ann_file': ann})
    opts.update(options)
    cfg = load_config(path, opts, osp.join(args.work_dir, name))
    check_data(cfg)
    return cfg


def train(cfg):
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def last_checkpoint(runner):
    with open(osp.join(runner.work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def evaluate(runner):
    return runner.test()


def visualize(args, det_runner, seg_runner):
    from mmdet.apis import DetInferencer
    from mmseg.apis import MMSegInferencer
    out = osp.join(args.work_dir, 'vis')
    val_dir = osp.join(args.data, 'images', 'val')
    images = [osp.join(val_dir, n) for n in sorted(os.listdir(val_dir))[:args.num_vis]]
    written = []
    for tag, runner, cls, kwargs in (('det', det_runner, DetInferencer, dict(pred_score_thr=0.5)),
                                     ('seg', seg_runner, MMSegInferencer, {})):
        if runner is None:
            continue
        inferencer = cls(model=runner.cfg, weights=last_checkpoint(runner), device=args.device)
        written += write_visualizations(inferencer, images, out, prefix=f'{tag}_', **kwargs)
    print(f'wrote {len(written)} images to {out}')
    return written


def main():
    args = parse_args()
    stages = Stages()
    metrics = {}
    stages.run('generate data', make_data, args)
    # the evaluate stages test on shapes-val, so no validation inside training (mmengine validates after the
    # last epoch unless val_begin lies beyond it); the schedulers' `end` must follow the length of training
    no_val = {'train_cfg.val_begin': 10 ** 9}
    det_opts = dict(no_val) if args.det_epochs is None else dict(
        no_val, **{'train_cfg.max_epochs': args.det_epochs, 'param_scheduler.1.end': args.det_epochs,
                   'default_hooks.checkpoint.interval': args.det_epochs})
    seg_opts = dict(no_val) if args.seg_iters is None else dict(no_val, **seg_schedule(args.seg_iters))
    det = stages.run('train detection', lambda: train(config_for(DET_CONFIG, args, 'det', det_opts)))
    if det is not None:
        result = stages.run('evaluate detection', evaluate, det) or {}
        metrics.update({'box mAP': result.get('coco/bbox_mAP'), 'mask mAP': result.get('coco/segm_mAP')})
        metrics = {k: None if v is None else float(v) for k, v in metrics.items()}
    if det is not None and not args.seg_from_scratch:
        # transfer: UperNet starts from the backbone the detection stage has just trained on the same images
        seg_opts['model.backbone.init_cfg'] = dict(_delete_=True, type='Pretrained', prefix='backbone.',
                                                   checkpoint=last_checkpoint(det))
    seg = stages.run('train segmentation', lambda: train(config_for(SEG_CONFIG, args, 'seg', seg_opts)))
    if seg is not None:
        result = stages.run('evaluate segmentation', evaluate, seg) or {}
        metrics['mIoU'] = float(result['mIoU']) / 100 if 'mIoU' in result else None
    stages.run('visualize', visualize, args, det, seg)
    report(args, stages, metrics)
    sys.exit(1 if stages.failed else 0)


def report(args, stages, metrics):
    print('\n' + '=' * 60 + '\nmlla_dense demo summary\n' + '=' * 60)
    for row in stages.rows:
        print(f'{row["stage"]:24s} {row["status"]:7s} {row["seconds"]:8.1f} s')
    total = sum(r['seconds'] for r in stages.rows)
    print(f'{"total":24s} {"":7s} {total:8.1f} s')
    print('-' * 60)
    for name, target in TARGETS.items():
        value = metrics.get(name)
        shown = 'n/a' if value is None else f'{value:.3f}'
        verdict = '' if value is None else ('(target >= %.2f met)' % target if value >= target
                                            else '(target >= %.2f missed)' % target)
        print(f'{name:24s} {shown:>7s}  {verdict}')
    summary = dict(stages=stages.rows, metrics=metrics, targets=TARGETS, total_seconds=round(total, 1),
                   device=args.device, torch=torch.__version__)
    os.makedirs(args.work_dir, exist_ok=True)
    with open(osp.join(args.work_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)


if __name__ == '__main__':
    main()
