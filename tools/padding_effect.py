"""How much padding beyond mmdet's changes a detector's outputs: what shape buckets cost in accuracy.

Padding is exactly neutral only for operations that never mix the padded pixels into the image's: MLLA's linear
attention sums over every token of the padded grid (the padded tokens enter the key-value sums and the
normalizer), its depthwise convolutions (CPE, LePE) see a border that moves, and VMamba's scans run across the
padding. So this measures instead of assuming. For generated shapes images (the val split's seeds of
tools/make_shapes.py) it runs the detector of CONFIG (random weights, or --checkpoint) on each image padded as
mmdet pads (to a multiple of 32) and padded further, at the bottom and right, by each --extra fraction of its
sides (rounded up to 32; BucketedDetDataPreprocessor on the COCO-like multi-scale stream adds 17% pixels on
average, about 8% per side). Reports per extra padding: the relative L2 difference of each backbone output over
the image's region (and without its last two rows and columns, where the convolutions read the padding), and over
the detections scoring >= --score-thr without padding, the largest box-coordinate difference (px) and score
difference to the same-label detection with the highest IoU. Writes OUT/NAME.json.

    python tools/padding_effect.py configs/shapes/mask-rcnn_mlla-nano_fpn_demo_shapes.py \\
        --checkpoint work_dirs/demo/det/epoch_5.pth --images 50
"""
import argparse
import copy
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

import mlla_dense  # noqa: F401  (registers the backbones)
from mlla_dense.datasets.shapes import ShapesConfig, render_sample, split_seeds
from mlla_dense.utils.benchmarking import print_table, run_info, write_json


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='an mmdet config')
    parser.add_argument('--checkpoint', help='weights (default: the random initial ones)')
    parser.add_argument('--images', type=int, default=20)
    parser.add_argument('--extra', nargs='+', type=float, default=[0.1, 0.25, 0.5],
                        help='extra padding per side, as a fraction of the side')
    parser.add_argument('--score-thr', type=float, default=0.3)
    parser.add_argument('--seed', type=int, default=0, help='the shapes dataset seed (make_shapes.py --seed)')
    parser.add_argument('--out', default='benchmarks/results')
    parser.add_argument('--name', default='padding_effect')
    return parser.parse_args(argv)


def build_detector(args):
    cfg = Config.fromfile(args.config)
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    torch.manual_seed(args.seed)
    model = MODELS.build(dict(cfg.model, backbone=dict(cfg.model.backbone, init_cfg=None)))
    model.init_weights()
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    return model.eval()


def preprocess(model, image):
    """The image as mmdet's test path batches it (normalized, padded to a multiple of 32)."""
    from mmdet.structures import DetDataSample
    height, width = image.shape[:2]
    sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                         scale_factor=(1.0, 1.0)))
    data = model.data_preprocessor(dict(inputs=[torch.from_numpy(image).permute(2, 0, 1).contiguous()],
                                        data_samples=[sample]), False)
    return data['inputs'], data['data_samples']


def pad_more(inputs, samples, fraction):
    height, width = inputs.shape[-2:]
    new_height = math.ceil(height * (1 + fraction) / 32) * 32
    new_width = math.ceil(width * (1 + fraction) / 32) * 32
    samples = copy.deepcopy(samples)
    for sample in samples:
        sample.set_metainfo({'batch_input_shape': (new_height, new_width)})
    return F.pad(inputs, (0, new_width - width, 0, new_height - height)), samples


def box_iou(a, b):
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).clamp(min=0).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter).clamp(min=1e-6)


def compare_predictions(ref, other, score_thr):
    """(largest box-coordinate difference, largest score difference, unmatched count) over ref's confident
    detections, each matched to the same-label detection of ``other`` with the highest IoU."""
    keep = ref.scores >= score_thr
    boxes, scores, labels = ref.bboxes[keep], ref.scores[keep], ref.labels[keep]
    box_diff, score_diff, unmatched = 0.0, 0.0, 0
    for box, score, label in zip(boxes, scores, labels):
        same = other.labels == label
        if not same.any():
            unmatched += 1
            continue
        iou = box_iou(box[None], other.bboxes[same])[0]
        best = int(iou.argmax())
        box_diff = max(box_diff, float((other.bboxes[same][best] - box).abs().max()))
        score_diff = max(score_diff, float((other.scores[same][best] - score).abs()))
    return box_diff, score_diff, unmatched, len(boxes)


def relative_feature_error(ref, padded, border=0):
    """Relative L2 difference of each backbone output over the region the unpadded input covers, less its last
    ``border`` rows and columns (where the convolutions read the padding)."""
    errors = []
    for a, b in zip(ref, padded):
        a = a[..., :a.shape[-2] - border, :a.shape[-1] - border]
        b = b[..., :a.shape[-2], :a.shape[-1]]
        errors.append(float((b - a).norm() / a.norm().clamp_min(1e-12)))
    return errors


def main(argv=None):
    args = parse_args(argv)
    model = build_detector(args)
    _, val_seeds = split_seeds(args.seed, 1000, args.images)  # make_shapes.py's default 1000 training images
    stats = {f: dict(features=[], interior=[], box=[], score=[], unmatched=0, detections=0) for f in args.extra}
    with torch.no_grad():
        for seed in val_seeds:
            inputs, samples = preprocess(model, render_sample(seed, ShapesConfig()).image)
            ref_features = model.backbone(inputs)
            ref = model.predict(inputs, samples)[0].pred_instances
            for fraction in args.extra:
                padded, padded_samples = pad_more(inputs, samples, fraction)
                s = stats[fraction]
                features = model.backbone(padded)
                s['features'].append(relative_feature_error(ref_features, features))
                s['interior'].append(relative_feature_error(ref_features, features, border=2))
                box, score, unmatched, n = compare_predictions(
                    ref, model.predict(padded, padded_samples)[0].pred_instances, args.score_thr)
                s['box'].append(box)
                s['score'].append(score)
                s['unmatched'] += unmatched
                s['detections'] += n
    info = run_info()
    records = []
    for fraction, s in stats.items():
        features, interior = np.array(s['features']), np.array(s['interior'])
        records.append(dict(config=os.path.basename(args.config), checkpoint=args.checkpoint, images=args.images,
                            extra_per_side=fraction,
                            feature_rel_error_mean=[round(float(v), 5) for v in features.mean(0)],
                            feature_rel_error_max=[round(float(v), 5) for v in features.max(0)],
                            interior_rel_error_mean=[round(float(v), 5) for v in interior.mean(0)],
                            detections=s['detections'], unmatched=s['unmatched'],
                            max_box_diff_px=round(max(s['box']), 3),
                            median_box_diff_px=round(float(np.median(s['box'])), 3),
                            max_score_diff=round(max(s['score']), 4),
                            median_score_diff=round(float(np.median(s['score'])), 4),
                            device=info['device'], date=info['date'], command=info['command']))
    print_table(records, ['extra_per_side', 'feature_rel_error_mean', 'interior_rel_error_mean', 'detections',
                          'unmatched', 'max_box_diff_px',
                          'median_box_diff_px', 'max_score_diff', 'median_score_diff'])
    write_json(os.path.join(args.out, f'{args.name}.json'), records)


if __name__ == '__main__':
    main()
