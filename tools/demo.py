"""The embedded demo (README's first command, `make demo`): generated data -> train -> evaluate -> visualize.

Generates data/shapes if absent (train, val, and val_restyled: val-like scenes drawn in another style, which
tells whether the models learnt shapes or the look of the training images). Then two trainings, both with an
MLLA-nano backbone, from scratch:

- detection: Mask R-CNN, evaluated with COCO box/mask mAP (pycocotools) on val and val_restyled, and box/mask AP
  at IoU 0.5 for comparison;
- segmentation: UperNet, evaluated with mIoU on val and val_restyled, with the config's test-time augmentation
  (flips, as tools/test.py --tta) and, for comparison, without it ('mIoU no TTA').

On a CPU they run side by side, each in a process of its own with one thread: these small models gain little
from a second thread (measured on 2 cores: a Mask R-CNN step took 0.68 s with one thread, 0.70 s with two),
so two single-threaded trainings side by side (each 10-20% slower than alone) take far less than the two in
turn; the one still training when the other ends takes the idle core (UperNet: 0.69 s a step with one thread,
0.51 s with two). ``--one-after-another`` runs them in this
process instead, the segmentation starting from the detector's backbone (the default on a GPU);
``--pretrain-iters N`` first pretrains the backbone with N UperNet iterations.

Draws ground truth beside the predictions for a few val and val_restyled images (work_dirs/demo/vis/), prints
a summary (each metric against its target, wall time per stage against the 10-minute budget), writes it to
work_dirs/demo/summary.json and exits non-zero if any stage failed.

    python tools/demo.py                          # everything, on the CPU
    python tools/demo.py --det-epochs 12          # train longer (e.g. on a GPU)
    python tools/demo.py --num-train 8 --num-val 2 --det-epochs 1 --seg-iters 2   # smoke run
    python tools/demo.py --det-config my_variant.py   # an experiment: a config that inherits the shipped one
"""
import os

# Before torch loads OpenMP: threads that finished their share sleep instead of spinning (on 2 cores the
# spinning threads take the CPU from the data loader and the Python side of training).
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import argparse  # noqa: E402
import copy  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os.path as osp  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import cv2  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.registry import HOOKS  # noqa: E402
from mmengine.runner import Runner, TestLoop  # noqa: E402

from mlla_dense.datasets.shapes import ShapesConfig, split_seeds, write_shapes_dataset, write_split  # noqa: E402
from mlla_dense.utils.atomic_file import atomic_write  # noqa: E402
from mlla_dense.utils import side_by_side as sbs  # noqa: E402
from mlla_dense.utils.run_config import check_data, enable_tta, load_config, missing_tta  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DET_CONFIG = osp.join(ROOT, 'configs/shapes/mask-rcnn_mlla-nano_fpn_demo_shapes.py')
SEG_CONFIG = osp.join(ROOT, 'configs/shapes/upernet_mlla-nano_demo_shapes-96x96.py')
TARGETS = {'box mAP': 0.5, 'mask mAP': 0.45, 'mIoU': 0.6}
BUDGET_SECONDS = 600
GENERALIZATION = 0.8  # the fraction of each val metric that val_restyled must keep to count as generalizing
SPLITS = ('val', 'val_restyled')
TASKS = {'det': 'detection', 'seg': 'segmentation'}
SEED = 0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', default='data/shapes', help='dataset folder (generated when absent)')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--num-train', type=int, default=1000)
    parser.add_argument('--num-val', type=int, default=100, help='images of val and of val_restyled each')
    parser.add_argument('--pretrain-iters', type=int, default=0,
                        help='UperNet pretraining of the backbone before the other trainings (0: none)')
    parser.add_argument('--det-epochs', type=int, help='override the detection config\'s epochs')
    parser.add_argument('--seg-iters', type=int, help='override the segmentation config\'s iterations (>= 2)')
    parser.add_argument('--num-vis', type=int, default=4, help='images of each val split to draw')
    parser.add_argument('--det-config', default=DET_CONFIG, help='the Mask R-CNN config to train (a variant of the '
                        'shipped one, for experiments: the demo sets its data paths and schedule options)')
    parser.add_argument('--seg-config', default=SEG_CONFIG, help='the UperNet config to train (likewise)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--one-after-another', dest='side_by_side', action='store_false',
                        help='train Mask R-CNN, then UperNet from its backbone, in this process (default on a '
                             'CPU: both at the same time, in two processes of one thread each; on a GPU: this)')
    parser.add_argument('--worker', choices=tuple(TASKS), help=argparse.SUPPRESS)  # one side of side_by_side
    parser.add_argument('--backbone', help=argparse.SUPPRESS)  # the worker's starting backbone checkpoint
    args = parser.parse_args()
    if args.device != 'cpu':
        args.side_by_side = False
    if args.seg_iters is not None and args.seg_iters < 2:
        parser.error('--seg-iters must be at least 2 (one warm-up and one decay iteration)')
    if args.pretrain_iters < 0 or args.pretrain_iters == 1:
        parser.error('--pretrain-iters must be 0 (no pretraining) or at least 2')
    if args.det_epochs is not None and args.det_epochs < 1:
        parser.error('--det-epochs must be at least 1')
    for option, path in (('--det-config', args.det_config), ('--seg-config', args.seg_config)):
        if not osp.isfile(path):
            parser.error(f'{option}: no config file at {path}')
    return args


class Stages:
    """Runs named stages, timing them and recording failures instead of stopping at the first."""

    def __init__(self):
        self.rows = []
        self.start = time.perf_counter()
        self.side_by_side = None  # wall seconds of the stages that ran side by side, if any

    def run(self, name, fn, *args):
        print(f'\n=== {name} (demo at {time.perf_counter() - self.start:.0f} s of {BUDGET_SECONDS}) ===', flush=True)
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


@HOOKS.register_module(force=True)  # force: a second load of this script (tests) registers it again
class ThreadsWhenPartnerDone(Hook):
    """Side by side on the CPU: once the other training has finished (its worker wrote ``marker``) and left its
    core idle, this training continues with ``threads`` CPU threads (checked every 10 iterations)."""

    def __init__(self, marker: str, threads: int):
        self.marker, self.threads, self.raised = marker, threads, False

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if not self.raised and batch_idx % 10 == 0 and osp.exists(self.marker):
            torch.set_num_threads(self.threads)
            self.raised = True
            runner.logger.info(f'the other training has finished: {self.threads} threads from iteration '
                               f'{runner.iter}')


def seg_schedule(seg_config, iters):
    """Options that fit the UperNet schedule (linear warm-up, then poly decay) to ``iters`` iterations; the
    warm-up shrinks to half of a run shorter than twice its length."""
    warmup = min(Config.fromfile(seg_config).param_scheduler[0]['end'], iters // 2)
    return {'train_cfg.max_iters': iters, 'param_scheduler.0.end': warmup, 'param_scheduler.1.begin': warmup,
            'param_scheduler.1.end': iters, 'default_hooks.checkpoint.interval': iters}


def make_data(args):
    """Generate the dataset, or only its missing val_restyled split (datasets of earlier versions lack it)."""
    def progress(split, done, total):
        if done % 250 == 0 or done == total:
            print(f'{split}: {done}/{total}', flush=True)

    if not osp.isdir(osp.join(args.data, 'annotations')):
        write_shapes_dataset(args.data, args.num_train, args.num_val, seed=SEED, cfg=ShapesConfig(),
                             progress=progress, num_restyled=args.num_val)
    elif (osp.exists(osp.join(args.data, 'annotations', 'instances_val.json'))
          and not osp.exists(osp.join(args.data, 'annotations', 'instances_val_restyled.json'))):
        print(f'adding val_restyled to the dataset in {args.data}')
        seeds = split_seeds(SEED, args.num_train, args.num_val, args.num_val)[2]
        write_split(args.data, 'val_restyled', seeds, ShapesConfig(style='restyled'), progress)
    else:
        print(f'using the existing dataset in {args.data}')


def demo_config(path, args, name):
    """The config at ``path``, working in WORK_DIR/<name>, its loaders (and a COCO evaluator's annotation file)
    pointed at --data."""
    cfg = load_config(path, work_dir=osp.join(args.work_dir, name))
    root = args.data.rstrip('/') + '/'
    opts = {f'{s}_dataloader.dataset.data_root': root for s in ('train', 'val', 'test')}
    if 'ann_file' in cfg.get('val_evaluator', {}):  # COCO metrics read their own annotations
        ann = root + 'annotations/instances_val.json'
        opts.update({'val_evaluator.ann_file': ann, 'test_evaluator.ann_file': ann})
    cfg.merge_from_dict(opts)
    return cfg


def config_for(path, args, name, options):
    cfg = demo_config(path, args, name)
    cfg.merge_from_dict(options)
    check_data(cfg)
    return cfg


def train(cfg):
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def last_checkpoint(runner):
    with open(osp.join(runner.work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def backbone_from(checkpoint):
    """Options that start a model with the backbone of ``checkpoint`` (of any of the demo's models)."""
    return {'model.backbone.init_cfg': dict(_delete_=True, type='Pretrained', prefix='backbone.',
                                            checkpoint=checkpoint)}


def undo_class_weights(runner):
    """Undo the class weights' prior in the trained UperNet (in the model and in its last checkpoint).

    The cross-entropy's class weights (background 0.1: it covers ~90% of the pixels) make the classes learnt
    early, but the trained model then over-predicts the shapes, as if they were 10 times more frequent: its
    logits estimate log(w_c p(c|x)) + const. Subtracting log(w_c) from each class's bias of the classifier
    (post-hoc logit adjustment) gives back estimates of p(c|x). Measured on one model after 1,500 iterations:
    val mIoU 0.533 instead of 0.501, val_restyled 0.368 instead of 0.367."""
    loss = runner.cfg.model.decode_head.loss_decode
    weights = (loss if isinstance(loss, dict) else loss[0]).get('class_weight')
    if not weights:
        return
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    bias = model.decode_head.conv_seg.bias
    with torch.no_grad():
        bias -= torch.log(torch.tensor(weights, dtype=bias.dtype, device=bias.device))
    path = last_checkpoint(runner)
    checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    checkpoint['state_dict']['decode_head.conv_seg.bias'] = bias.detach().cpu().clone()
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write(path, buffer.getvalue())


def evaluate(runner, split='val'):
    """The metrics of ``runner``'s model on a split of the shapes dataset (its test set is val)."""
    if split == 'val':
        return runner.test()
    loader = copy.deepcopy(runner.cfg.test_dataloader)
    evaluator = copy.deepcopy(runner.cfg.test_evaluator)
    dataset = loader['dataset']
    if 'ann_file' in dataset:  # COCO instances
        dataset['ann_file'] = f'annotations/instances_{split}.json'
        dataset['data_prefix'] = dict(img=f'images/{split}/')
        evaluator['ann_file'] = osp.join(dataset['data_root'], dataset['ann_file'])
    else:  # semantic maps
        dataset['data_prefix'] = dict(img_path=f'images/{split}', seg_map_path=f'semantic/{split}')
    return TestLoop(runner, loader, evaluator).run()


def evaluate_splits(runner, keys):
    """{split: {name: value}} for the metrics ``keys`` ({name: (result key, scale)}) on val and val_restyled."""
    out = {}
    for split in SPLITS:
        result = evaluate(runner, split)
        out[split] = {name: float(result[key]) * scale for name, (key, scale) in keys.items()}
    return out


def tta_runner(runner):
    """A runner of ``runner``'s config (one with a test-time augmentation) and last checkpoint with the test-time
    augmentation (as tools/test.py --tta), working in WORK_DIR/<task>/tta."""
    cfg = copy.deepcopy(runner.cfg)
    enable_tta(cfg)
    cfg.load_from = last_checkpoint(runner)
    cfg.work_dir = osp.join(runner.work_dir, 'tta')
    cfg.experiment_name = f'{runner.experiment_name}_tta'
    return Runner.from_cfg(cfg)


def evaluate_task(runner, keys):
    """:func:`evaluate_splits`, with the config's test-time augmentation where it has one; each metric without it
    then comes as '<metric> no TTA'."""
    if missing_tta(runner.cfg):
        return evaluate_splits(runner, keys)
    single = evaluate_splits(runner, {f'{name} no TTA': spec for name, spec in keys.items()})
    augmented = evaluate_splits(tta_runner(runner), keys)
    return {split: {**values, **single[split]} for split, values in augmented.items()}


def draw(args, det_model, seg_model):
    """For the first ``--num-vis`` images of each val split, one picture: ground truth beside the Mask R-CNN
    and UperNet predictions (upscaled, labelled), written to WORK_DIR/vis/<stem>.png. The models are
    (config, checkpoint) pairs, or None where a training failed."""
    from mmdet.apis import DetInferencer
    from mmseg.apis import MMSegInferencer
    from pycocotools.coco import COCO
    out = osp.join(args.work_dir, 'vis')
    os.makedirs(out, exist_ok=True)
    det = seg = None
    if det_model is not None:
        det = DetInferencer(model=det_model[0], weights=det_model[1], device=args.device, show_progress=False)
    if seg_model is not None:
        seg = MMSegInferencer(model=seg_model[0], weights=seg_model[1], device=args.device)
    det_meta = Config.fromfile(args.det_config).metainfo
    seg_meta = Config.fromfile(args.seg_config).metainfo
    classes, palette = list(det_meta['classes']), [tuple(c) for c in det_meta['palette']]
    written = []
    for split in SPLITS:
        coco = COCO(osp.join(args.data, 'annotations', f'instances_{split}.json'))
        for info in coco.loadImgs(sorted(coco.getImgIds())[:args.num_vis]):
            path = osp.join(args.data, 'images', split, info['file_name'])
            image = cv2.imread(path)
            factor = sbs.upscale_factor(image.shape)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=info['id']))
            truth = sbs.draw_instances(image, factor, [coco.annToMask(a) for a in anns],
                                       [a['category_id'] - 1 for a in anns],
                                       [(x, y, x + w, y + h) for x, y, w, h in (a['bbox'] for a in anns)],
                                       classes, palette)
            rows = [[sbs.titled(sbs.enlarge(image, factor), f'{split}/{info["file_name"]} (x{factor})'),
                     sbs.titled(truth, 'ground truth: instances')]]
            if det is not None:
                pred = det(path, return_datasamples=True)['predictions'][0].pred_instances
                pred = pred[pred.scores >= 0.5].cpu().numpy()
                rows[0].append(sbs.titled(sbs.draw_instances(image, factor, list(pred.masks), list(pred.labels),
                                                             list(pred.bboxes), classes, palette, list(pred.scores)),
                                          'Mask R-CNN (score >= 0.5)'))
            semantic = cv2.imread(osp.join(args.data, 'semantic', split, info['file_name'][:-4] + '.png'),
                                  cv2.IMREAD_UNCHANGED)
            rows.append([sbs.titled(sbs.legend(seg_meta['classes'][1:], seg_meta['palette'][1:],
                                               truth.shape[1]), 'classes'),
                         sbs.titled(sbs.draw_semantic(image, factor, semantic, seg_meta['palette']),
                                    'ground truth: semantic')])
            if seg is not None:
                result = seg(path, return_datasamples=True)
                result = result[0] if isinstance(result, list) else result
                label_map = result.pred_sem_seg.data[0].cpu().numpy()
                rows[1].append(sbs.titled(sbs.draw_semantic(image, factor, label_map, seg_meta['palette']),
                                          'UperNet'))
            name = osp.join(out, osp.splitext(info['file_name'])[0] + '.png')
            cv2.imwrite(name, sbs.grid(rows))
            written.append(name)
    print(f'wrote {len(written)} pictures to {out}')
    return written


# AP at IoU 0.5 is shown beside the targets: whether the shapes are found and classified, apart from how
# exactly their outlines are drawn (mAP averages IoU 0.5 to 0.95)
DET_KEYS = {'box mAP': ('coco/bbox_mAP', 1), 'mask mAP': ('coco/segm_mAP', 1),
            'box AP50': ('coco/bbox_mAP_50', 1), 'mask AP50': ('coco/segm_mAP_50', 1)}
SEG_KEYS = {'mIoU': ('mIoU', 0.01)}
# the evaluate stages test on val and val_restyled, so no validation inside training (mmengine validates
# after the last epoch unless val_begin lies beyond it); the schedulers' `end` must follow the training length
NO_VAL = {'train_cfg.val_begin': 10 ** 9}


def det_options(args, backbone):
    opts = dict(NO_VAL) if args.det_epochs is None else dict(
        NO_VAL, **{'train_cfg.max_epochs': args.det_epochs, 'param_scheduler.1.end': args.det_epochs,
                   'default_hooks.checkpoint.interval': args.det_epochs})
    if backbone:
        opts.update(backbone_from(backbone))
    return opts


def seg_options(args, backbone):
    opts = dict(NO_VAL) if args.seg_iters is None else dict(NO_VAL, **seg_schedule(args.seg_config, args.seg_iters))
    if backbone:
        opts.update(backbone_from(backbone))
    return opts


def train_and_evaluate(stages, args, task, backbone, metrics):
    """One task's training and evaluation as two stages; the trained model's config and checkpoint, or None. As a
    side-by-side worker it marks the end of its training for the other worker (ThreadsWhenPartnerDone)."""
    path, options, keys = ((args.det_config, det_options, DET_KEYS) if task == 'det' else
                           (args.seg_config, seg_options, SEG_KEYS))
    opts = options(args, backbone)
    if args.worker:
        partner = next(t for t in TASKS if t != task)
        opts['custom_hooks'] = [dict(type='ThreadsWhenPartnerDone', marker=trained_marker(args, partner),
                                     threads=os.cpu_count())]
    runner = stages.run(f'train {TASKS[task]}', lambda: train(config_for(path, args, task, opts)))
    if args.worker:
        os.makedirs(osp.dirname(trained_marker(args, task)), exist_ok=True)
        open(trained_marker(args, task), 'w').close()
        # evaluation is one small image at a time: one thread, even where ThreadsWhenPartnerDone gave it two
        # (UperNet's test-time flips: 0.133 s an image with one thread, 0.163 with two; benchmarks/NOTES.md,
        # "The demo's runs", run 35)
        torch.set_num_threads(1)
    if runner is None:
        return None
    if task == 'seg':
        undo_class_weights(runner)
    for split, values in (stages.run(f'evaluate {TASKS[task]}', evaluate_task, runner, keys) or {}).items():
        metrics.setdefault(split, {}).update(values)
    return runner.cfg, last_checkpoint(runner)


def worker(args):
    """``--worker det|seg``: one task's stages in a process of its own (one CPU thread), for main() to run
    both side by side; the stages and metrics go to WORK_DIR/<task>/worker.json."""
    stages, metrics = Stages(), {}
    train_and_evaluate(stages, args, args.worker, args.backbone, metrics)
    os.makedirs(osp.join(args.work_dir, args.worker), exist_ok=True)
    with open(worker_file(args, args.worker), 'w') as f:
        json.dump(dict(stages=stages.rows, metrics=metrics), f)
    sys.exit(1 if stages.failed else 0)


def worker_file(args, task):
    return osp.join(args.work_dir, task, 'worker.json')


def trained_marker(args, task):
    """The file a side-by-side worker writes when its training has ended (finished or failed)."""
    return osp.join(args.work_dir, task, 'training_ended')


def side_by_side(stages, args, backbone, metrics):
    """Mask R-CNN and UperNet trained and evaluated at the same time, each in a process of its own with one CPU
    thread (the small models' ops gain little from a second thread, so on 2 cores each training runs only 10-20%
    slower than alone) until the other's training ends (ThreadsWhenPartnerDone). Their output is relayed line by
    line, prefixed; the (config, checkpoint) of each trained model, or None."""
    start = time.perf_counter()
    procs, relays = {}, []
    for task in TASKS:
        for stale in (worker_file(args, task), trained_marker(args, task)):
            if osp.exists(stale):
                os.remove(stale)
        cmd = [sys.executable, osp.abspath(__file__), '--worker', task, '--data', args.data,
               '--work-dir', args.work_dir, '--device', args.device, '--det-config', args.det_config,
               '--seg-config', args.seg_config]
        cmd += ['--det-epochs', str(args.det_epochs)] if args.det_epochs is not None else []
        cmd += ['--seg-iters', str(args.seg_iters)] if args.seg_iters is not None else []
        cmd += ['--backbone', backbone] if backbone else []
        env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
        procs[task] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        relays.append(threading.Thread(target=_relay, args=(procs[task].stdout, f'[{task}] '), daemon=True))
        relays[-1].start()
    print(f'\n=== train and evaluate detection and segmentation side by side '
          f'(demo at {start - stages.start:.0f} s of {BUDGET_SECONDS}) ===', flush=True)
    results = {}
    for task, proc in procs.items():
        proc.wait()
        try:
            with open(worker_file(args, task)) as f:
                results[task] = json.load(f)
        except (OSError, ValueError):  # the worker died before writing its results
            results[task] = dict(stages=[dict(stage=f'{s} {TASKS[task]}', status='FAILED', seconds=0.0)
                                         for s in ('train', 'evaluate')], metrics={})
    for relay in relays:
        relay.join()
    wall = round(time.perf_counter() - start, 1)
    for task in TASKS:
        for row in results[task]['stages']:
            stages.rows.append(dict(row, side_by_side=True))
        for split, values in results[task]['metrics'].items():
            metrics.setdefault(split, {}).update(values)
    stages.side_by_side = wall
    models = {}
    for task, path in (('det', args.det_config), ('seg', args.seg_config)):
        trained = osp.join(args.work_dir, task, 'last_checkpoint')
        if any(r['stage'] == f'train {TASKS[task]}' and r['status'] == 'ok' for r in results[task]['stages']) \
                and osp.exists(trained):
            cfg = demo_config(path, args, task)
            with open(trained) as f:
                models[task] = (cfg, f.read().strip())
    return models.get('det'), models.get('seg')


def _relay(stream, prefix):
    for line in stream:
        print(prefix + line, end='', flush=True)


def main():
    args = parse_args()
    if args.worker:
        torch.set_num_threads(1)
        return worker(args)
    torch.set_num_threads(os.cpu_count() if args.device == 'cpu' else torch.get_num_threads())
    stages = Stages()
    metrics = {}
    stages.run('generate data', make_data, args)
    backbone = None
    if args.pretrain_iters:
        pretrain = stages.run('pretrain backbone', lambda: train(config_for(
            args.seg_config, args, 'pretrain', dict(NO_VAL, **seg_schedule(args.seg_config, args.pretrain_iters)))))
        backbone = None if pretrain is None else last_checkpoint(pretrain)
    if args.side_by_side:
        det, seg = side_by_side(stages, args, backbone, metrics)
    else:  # one after the other, the segmentation starting from the detector's backbone
        det = train_and_evaluate(stages, args, 'det', backbone, metrics)
        seg = train_and_evaluate(stages, args, 'seg', det[1] if det else backbone, metrics)
    stages.run('draw pictures', draw, args, det, seg)
    report(args, stages, metrics)
    sys.exit(1 if stages.failed else 0)


def report(args, stages, metrics):
    """Print the summary (stages and their times against the budget, metrics against their targets) and write
    it to WORK_DIR/summary.json."""
    total = round(time.perf_counter() - stages.start, 1)
    print('\n' + '=' * 72 + '\nmlla_dense demo summary\n' + '=' * 72)
    for row in stages.rows:
        print(f'{row["stage"]:24s} {row["status"]:7s} {row["seconds"]:8.1f} s'
              + ('   (side by side)' if row.get('side_by_side') else ''))
    if stages.side_by_side is not None:
        print(f'{"side by side, wall":24s} {"":7s} {stages.side_by_side:8.1f} s   (detection and segmentation '
              f'at the same time, one CPU thread each until one ends)')
    print(f'{"total":24s} {"":7s} {total:8.1f} s   (budget {BUDGET_SECONDS} s: '
          f'{"met" if total <= BUDGET_SECONDS else "missed"}; {os.cpu_count()} CPU cores, device {args.device})')
    # on a shared machine the wall clock overstates the demo's cost: the CPU time and the load tell by how much
    cpu = round(time.process_time(), 1)
    load = ' '.join(f'{v:.1f}' for v in os.getloadavg())
    print(f'{"CPU time (main process)":24s} {"":7s} {cpu:8.1f} s   (load average now: {load})')
    print('-' * 72)
    print(f'{"metric":12s} {"val":>6s} {"target":>8s} {"":6s}   {"val_restyled":>12s} {"kept":>6s}')
    val, restyled = metrics.get('val', {}), metrics.get('val_restyled', {})
    kept = {}
    for name, target in TARGETS.items():
        value, other = val.get(name), restyled.get(name)
        verdict = 'n/a' if value is None else ('met' if value >= target else 'missed')
        if value and other is not None:
            kept[name] = other / value
        print(f'{name:12s} {_shown(value):>6s} {">= %.2f" % target:>8s} {verdict:6s}   {_shown(other):>12s} '
              f'{_share(value, other):>6s}')
    for name in [n for n in val if n not in TARGETS]:  # shown for comparison, without a target or a verdict
        value, other = val[name], restyled.get(name)
        print(f'{name:12s} {_shown(value):>6s} {"":8s} {"":6s}   {_shown(other):>12s} {_share(value, other):>6s}')
    generalizes = 'n/a' if len(kept) < len(TARGETS) else (
        'yes' if min(kept.values()) >= GENERALIZATION else 'no')
    print(f'generalizes (val_restyled keeps >= {GENERALIZATION:.0%} of each val metric with a target): {generalizes}')
    print(f'pictures: {osp.join(args.work_dir, "vis")}/')
    summary = dict(stages=stages.rows, metrics=metrics, targets=TARGETS, generalizes=generalizes,
                   side_by_side_seconds=stages.side_by_side, total_seconds=total, budget_seconds=BUDGET_SECONDS,
                   cpu_seconds=cpu, load_average=os.getloadavg(),
                   device=args.device, cpu_count=os.cpu_count(), torch=torch.__version__)
    os.makedirs(args.work_dir, exist_ok=True)
    with open(osp.join(args.work_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)


def _share(value, other):
    """How much of the val metric ``value`` val_restyled's ``other`` keeps, as a percentage, or 'n/a'."""
    return '%5.0f%%' % (100 * other / value) if value and other is not None else 'n/a'


def _shown(value):
    return 'n/a' if value is None else f'{value:.3f}'


if __name__ == '__main__':
    main()
