"""Time full training steps (forward, backward, optimizer) of detection or segmentation configs on generated
data, and check mixed-precision stability.

For each config x impl ('official': the same detector or segmentor with the authors' backbone, imported from
``--official-mlla`` / ``--official-vmamba`` checkouts as tools/official_models.py does, with our backbone's
initial weights; 'mlla_dense': the config as shipped, with the Triton kernels and the CUDA graphs its backbone's
``cuda_graphs`` asks for; 'mlla_dense-eager': the same with ``cuda_graphs=0``; 'eager-reference':
MLLA_DENSE_BACKEND=torch, ``cuda_graphs=0``) x dtype, runs ``--iters`` steps of ``model.train_step`` on generated
images with drawn objects (boxes and masks for detection, label maps for segmentation), with the config's data
preprocessor (shape buckets included), optimizer, parameter-wise settings, gradient clipping and
iteration-based warmup. Images are ``--size`` or, with ``--size-stream``, drawn from a COCO-like stream of
sizes (mlla_dense/datasets/coco_size_stream.py). bf16 and fp16 use mmengine's AmpOptimWrapper (fp16 with
dynamic loss scaling), as a config with ``optim_wrapper.type='AmpOptimWrapper'`` trains; fp32 the config's
OptimWrapper. The impls of a config and dtype take turns, one step each, on the same generated batches, each
step from the same random seed (proposal sampling, drop path), so their loss curves compare step by step.
Records the median step time after ``--warmup`` steps, the peak memory, the distinct backbone input shapes, the
memory the CUDA graph captures hold and every total loss; exits with 1 if any loss is not finite. Writes
OUT/NAME.json and OUT/NAME.png (the loss curves).

    python tools/benchmark_train_step.py configs/mlla/mask-rcnn_mlla-t_fpn_1x_coco.py --size 800x1333 --batch 2
    python tools/benchmark_train_step.py configs/mlla/upernet_mlla-t_8xb2-160k_ade20k-512x512.py --batch 8
    python tools/benchmark_train_step.py configs/mlla/mask-rcnn_mlla-t_fpn_1x_coco.py --impls mlla_dense \\
        --dtypes bf16 fp16 --iters 200 --name amp_stability
    python tools/benchmark_train_step.py configs/mlla/mask-rcnn_mlla-t_fpn_1x_coco.py --size-stream ms-crop \\
        --impls official mlla_dense mlla_dense-eager --official-mlla ../MLLA
"""
import argparse
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS, init_default_scope

import mlla_dense  # noqa: F401  (registers the backbones)
from mlla_dense.datasets.coco_size_stream import PIPELINES, size_stream
from mlla_dense.kernels.backend import forced_backend
from mlla_dense.utils.benchmarking import print_table, run_info, write_json

IMPLS = {'official': 'auto', 'mlla_dense': 'auto', 'mlla_dense-eager': 'auto', 'eager-reference': 'torch'}
ARCH_SUFFIX = {'tiny': 't', 'small': 's', 'base': 'b'}
AMP_DTYPES = {'bf16': 'bfloat16', 'fp16': 'float16'}
DEFAULT_SIZES = {'mmdet': ((800, 1333), 2), 'mmseg': ((512, 512), 8)}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('configs', nargs='+', help='mmdet or mmseg config files')
    parser.add_argument('--impls', nargs='*', default=['mlla_dense', 'eager-reference'], choices=list(IMPLS))
    parser.add_argument('--dtypes', nargs='*', default=['bf16'], choices=['bf16', 'fp16', 'fp32'])
    parser.add_argument('--size', help='HxW of the generated images (default 800x1333 detection, 512x512 '
                                       'segmentation)')
    parser.add_argument('--size-stream', choices=PIPELINES, help='draw each image\'s size from the COCO-like stream '
                        'of this training pipeline instead of --size (detection configs)')
    parser.add_argument('--batch', type=int, help='images per step (default 2 detection, 8 segmentation)')
    parser.add_argument('--iters', type=int, default=20, help='training steps per run')
    parser.add_argument('--warmup', type=int, default=5, help='steps left out of the timing')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='benchmarks/results')
    parser.add_argument('--name', default='train_step', help='stem of the JSON and PNG files')
    parser.add_argument('--official-mlla', metavar='DIR', help='a clone of https://github.com/LeapLabTHU/MLLA')
    parser.add_argument('--official-vmamba', metavar='DIR', help='a clone of https://github.com/MzeroMiko/VMamba '
                        'with its selective_scan_cuda_oflex extension built')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config entries, e.g. model.backbone.drop_path_rate=0')
    args = parser.parse_args()
    if 'official' in args.impls and not (args.official_mlla or args.official_vmamba):
        parser.error('--impls official needs --official-mlla DIR or --official-vmamba DIR')
    if args.iters <= args.warmup:
        parser.error(f'--iters ({args.iters}) must exceed --warmup ({args.warmup})')
    if args.size and not (len(args.size.split('x')) == 2 and all(s.isdigit() for s in args.size.split('x'))):
        parser.error(f'--size must be HxW, e.g. 800x1333, got {args.size}')
    if args.size and args.size_stream:
        parser.error('give --size or --size-stream, not both')
    return args


def draw_objects(rng, height, width, num_classes, max_objects=5):
    """An RGB noise image with 1..max_objects filled ellipses (one colour per class): image, boxes, labels, masks."""
    palette = rng.integers(0, 256, size=(num_classes, 3))
    image = rng.integers(0, 64, size=(height, width, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:height, :width]
    boxes, labels, masks = [], [], []
    for _ in range(rng.integers(1, max_objects + 1)):
        h = rng.integers(max(4, height // 16), max(5, height // 2))
        w = rng.integers(max(4, width // 16), max(5, width // 2))
        y0, x0 = rng.integers(0, height - h), rng.integers(0, width - w)
        label = int(rng.integers(num_classes))
        mask = ((yy - y0 - h / 2) / (h / 2)) ** 2 + ((xx - x0 - w / 2) / (w / 2)) ** 2 <= 1
        image[mask] = palette[label]
        boxes.append([x0, y0, x0 + w, y0 + h])
        labels.append(label)
        masks.append(mask)
    return image, np.array(boxes, np.float32), np.array(labels, np.int64), np.stack(masks).astype(np.uint8)


def generated_batch(scope, rng, sizes, num_classes):
    """``model.train_step`` input: uint8 (3, H, W) images of the (H, W) ``sizes`` and data samples with their
    ground truth."""
    inputs, samples = [], []
    for i, (height, width) in enumerate(sizes):
        image, boxes, labels, masks = draw_objects(rng, height, width, num_classes)
        inputs.append(torch.from_numpy(image).permute(2, 0, 1).contiguous())
        meta = dict(img_shape=(height, width), ori_shape=(height, width), scale_factor=(1.0, 1.0), img_id=i)
        if scope == 'mmdet':
            from mmdet.structures import DetDataSample
            from mmdet.structures.mask import BitmapMasks
            from mmengine.structures import InstanceData
            sample = DetDataSample(metainfo=meta)
            sample.gt_instances = InstanceData(bboxes=torch.from_numpy(boxes), labels=torch.from_numpy(labels),
                                               masks=BitmapMasks(masks, height, width))
        else:
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            label_map = np.zeros((height, width), np.int64)
            for label, mask in zip(labels, masks):
                label_map[mask.astype(bool)] = label
            sample = SegDataSample(metainfo=meta)
            sample.gt_sem_seg = PixelData(data=torch.from_numpy(label_map)[None])
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def official_name(backbone_cfg) -> str:
    """'mlla-t', 'vmamba-s', ... for a config's backbone (the official comparison needs an ``arch`` preset)."""
    kind = {'MLLA': 'mlla', 'VMamba': 'vmamba'}.get(backbone_cfg.get('type'))
    arch = ARCH_SUFFIX.get(backbone_cfg.get('arch'))
    if kind is None or arch is None:
        raise SystemExit(f"--impls official needs an MLLA or VMamba backbone with arch tiny/small/base, got "
                         f"type={backbone_cfg.get('type')!r} arch={backbone_cfg.get('arch')!r}")
    return f'{kind}-{arch}'


def build_model(cfg, impl, device, args):
    scope = cfg.default_scope
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    model_cfg = cfg.model.copy()
    model_cfg.backbone = dict(model_cfg.backbone, init_cfg=None)  # no pretrained weights on the device
    if impl in ('mlla_dense-eager', 'eager-reference'):
        model_cfg.backbone['cuda_graphs'] = 0
    model = registry.build(model_cfg)
    model.init_weights()
    if impl == 'official':
        from official_models import build_official
        model.backbone = build_official(official_name(model_cfg.backbone), model.backbone, args.official_mlla,
                                        args.official_vmamba)
    return revert_sync_batchnorm(model).to(device).train()


def build_optimizer(cfg, model, dtype):
    """The config's optimizer wrapper, as AmpOptimWrapper for bf16/fp16, and its iteration-based schedulers."""
    wrapper = cfg.optim_wrapper.copy()
    wrapper.pop('_delete_', None)
    if dtype in AMP_DTYPES:
        if not torch.cuda.is_available():
            raise SystemExit(f'{dtype} runs through mmengine\'s AmpOptimWrapper, which needs a GPU; use --dtypes fp32')
        wrapper.update(type='AmpOptimWrapper', dtype=AMP_DTYPES[dtype])
        if dtype == 'fp16':
            wrapper['loss_scale'] = 'dynamic'
    else:
        wrapper['type'] = 'OptimWrapper'
    optim_wrapper = build_optim_wrapper(model, wrapper)
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optim_wrapper)) for s in cfg.get('param_scheduler', [])
                  if not s.get('by_epoch', True)]
    return optim_wrapper, schedulers


def num_classes(cfg):
    if cfg.default_scope == 'mmdet':
        return cfg.model.roi_head.bbox_head.num_classes
    return cfg.model.decode_head.num_classes


class ImplRun:
    """One impl x dtype of a config: its model, optimizer and generated-data stream, stepped one at a time so that
    the impls of a config can take turns (host speed drifts over minutes; turns expose them to the same drift).

    The peak memory of an impl is what its model and optimizer hold plus the largest rise of one of its steps
    (optimizer states and activations), measured while the other impls' models stay resident.
    """

    def __init__(self, cfg, impl, dtype, sizes, args, device):
        self.cfg, self.impl, self.dtype, self.device, self.sizes, self.args = cfg, impl, dtype, device, sizes, args
        torch.manual_seed(args.seed)
        self.rng = np.random.default_rng(args.seed)
        self.times, self.losses, self.scales = [], [], []
        self.input_shapes = set()
        resident = self._allocated()
        with forced_backend(IMPLS[impl]):
            self.model = build_model(cfg, impl, device, args)
            self.optim_wrapper, self.schedulers = build_optimizer(cfg, self.model, dtype)
        self.resident_bytes = self._allocated() - resident
        self.step_rise_bytes = 0
        self.model.backbone.register_forward_pre_hook(lambda _, args: self.input_shapes.add(tuple(args[0].shape)))

    def _allocated(self):
        return torch.cuda.memory_allocated() if self.device == 'cuda' else 0

    def step(self):
        step = len(self.times)
        data = generated_batch(self.cfg.default_scope, self.rng, self.sizes[step], num_classes(self.cfg))
        torch.manual_seed(self.args.seed + step)
        if self.device == 'cuda':
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        before = self._allocated()
        with forced_backend(IMPLS[self.impl]):
            start = time.perf_counter()
            log_vars = self.model.train_step(data, self.optim_wrapper)
            for scheduler in self.schedulers:
                scheduler.step()
            loss = float(log_vars['loss'])
            if self.device == 'cuda':
                torch.cuda.synchronize()
            self.times.append((time.perf_counter() - start) * 1e3)
        if self.device == 'cuda':
            self.step_rise_bytes = max(self.step_rise_bytes, torch.cuda.max_memory_allocated() - before)
        self.losses.append(loss)
        if self.dtype == 'fp16':
            self.scales.append(float(self.optim_wrapper.loss_scaler.get_scale()))
        print(f'{self.impl} {self.dtype} step {len(self.times)}/{self.args.iters}: loss {loss:.4f}, '
              f'{self.times[-1]:.1f} ms', flush=True)

    def capture_mb(self):
        """MiB the backbone's CUDA graph captures hold (None without graphs)."""
        graphs = getattr(self.model.backbone, 'training_graphs', None)
        return round(graphs.capture_bytes / 2 ** 20) if graphs is not None else None

    def record(self):
        timed = self.times[self.args.warmup:]
        fixed = len({tuple(map(tuple, s)) for s in self.sizes}) == 1
        record = dict(config=os.path.basename(self.cfg.filename), impl=self.impl, dtype=self.dtype,
                      batch=len(self.sizes[0]), height=self.sizes[0][0][0] if fixed else None,
                      width=self.sizes[0][0][1] if fixed else None, size_stream=self.args.size_stream,
                      input_shapes=len(self.input_shapes), capture_mb=self.capture_mb(), iters=self.args.iters,
                      warmup=self.args.warmup, step_ms=round(statistics.median(timed), 2),
                      step_ms_mean=round(statistics.mean(timed), 2),
                      peak_mb=round((self.resident_bytes + self.step_rise_bytes) / 2 ** 20)
                      if self.device == 'cuda' else None,
                      nonfinite_losses=sum(not math.isfinite(v) for v in self.losses),
                      losses=[round(v, 5) for v in self.losses])
        if self.scales:
            record['loss_scales'] = self.scales
        return record


def main():
    args = parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    MMLogger.get_instance('benchmark_train_step', log_level='WARNING')  # no per-parameter optimizer log lines
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    info = run_info()
    records = []
    for path in args.configs:
        cfg = Config.fromfile(path)
        cfg.merge_from_dict(args.cfg_options)
        sizes = step_sizes(cfg, args)
        for dtype in args.dtypes:
            runs = [ImplRun(cfg, impl, dtype, sizes, args, device) for impl in args.impls]
            for _ in range(args.iters):
                for run in runs:
                    run.step()
            for run in runs:
                records.append(dict(run.record(), device=info['device'], date=info['date'],
                                    command=info['command']))
            del runs
            if device == 'cuda':
                torch.cuda.empty_cache()
            add_ratios(records)
            write_json(os.path.join(args.out, f'{args.name}.json'), records)  # kept if a time limit hits
    print_table(records, ['config', 'impl', 'dtype', 'batch', 'height', 'width', 'size_stream', 'input_shapes',
                          'step_ms', 'peak_mb', 'capture_mb', 'nonfinite_losses', 'step_ratio_vs_official',
                          'step_ratio_vs_eager_reference'])
    plot(records, os.path.join(args.out, f'{args.name}.png'))
    bad = [r for r in records if r['nonfinite_losses']]
    if bad:
        print('non-finite losses in: ' + ', '.join(f"{r['config']} {r['impl']} {r['dtype']}" for r in bad),
              file=sys.stderr)
        sys.exit(1)


def step_sizes(cfg, args):
    """The (H, W) of every image of every step: ``--size`` (or the scope's default) or the ``--size-stream``."""
    (height, width), batch = DEFAULT_SIZES[cfg.default_scope]
    batch = args.batch or batch
    if args.size_stream:
        if cfg.default_scope != 'mmdet':
            raise SystemExit('--size-stream draws detection image sizes; segmentation configs train on fixed crops')
        return [[tuple(map(int, s)) for s in b] for b in size_stream(args.iters, batch, args.size_stream, args.seed)]
    if args.size:
        height, width = map(int, args.size.split('x'))
    return [[(height, width)] * batch] * args.iters


def add_ratios(records):
    """step_ratio_vs_official and step_ratio_vs_eager_reference for every record whose twin has run."""
    for basis in ('official', 'eager-reference'):
        for r in records:
            base = [x for x in records if x['config'] == r['config'] and x['dtype'] == r['dtype']
                    and x['impl'] == basis]
            if base and r['impl'] != basis:
                r[f"step_ratio_vs_{basis.replace('-', '_')}"] = round(r['step_ms'] / base[0]['step_ms'], 3)


def plot(records, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in records:
        ax.plot(range(1, len(r['losses']) + 1), r['losses'], label=f"{r['config']} {r['impl']} {r['dtype']}")
    ax.set(xlabel='training step', ylabel='total loss', yscale='log',
           title=f"training loss on generated data ({records[0]['device']}, {records[0]['date']})")
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == '__main__':
    main()
