"""Draw a model's predictions on images: boxes and masks (detection configs) or a segmentation overlay.

    python tools/image_demo.py demo.jpg configs/shapes/mask-rcnn_mlla-nano_fpn_demo_shapes.py \
        --weights work_dirs/demo/det/epoch_5.pth --out-dir outputs
    python tools/image_demo.py images/ CONFIG                      # no checkpoint: random weights, a warning

Runs through mmdet's DetInferencer or mmseg's MMSegInferencer (chosen by the config's default_scope) and
writes one PNG per image to OUT_DIR/vis/, one image at a time: a file that cannot be read (empty, truncated,
not an image), an image outside the size limits or one the model fails on is skipped with a line naming it
and why, and the others are written. Grey, palette, alpha and 16-bit images are read as 8-bit colour.

Exit status: 0 when every image was drawn, else the number of images skipped (at most 100).
"""
import argparse
import os.path as osp
import sys
import warnings

import torch
from mmengine.config import Config

from mlla_dense.utils.inference import ImageLimits, draw_each, list_images


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('config', help='model config')
    parser.add_argument('--weights', help='checkpoint; without it the model keeps random weights')
    parser.add_argument('--out-dir', default='work_dirs/image_demo', help='PNGs go to OUT_DIR/vis/')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection score threshold')
    parser.add_argument('--min-side', type=int, default=ImageLimits.min_side,
                        help='skip images with a side shorter than this (pixels)')
    parser.add_argument('--max-pixels', type=int, default=ImageLimits.max_pixels,
                        help='skip images with more pixels than this (width x height)')
    return parser.parse_args()


def build_inferencer(cfg, config_path, weights, device):
    metainfo = cfg.get('test_dataloader', {}).get('dataset', {}).get('metainfo')
    if cfg.get('default_scope') == 'mmseg':
        from mmseg.apis import MMSegInferencer
        inferencer = MMSegInferencer(model=config_path, weights=weights, device=device)
        inferencer.show_progress = False  # one image a call: the tool prints its own progress
    else:
        from mmdet.apis import DetInferencer
        inferencer = DetInferencer(model=config_path, weights=weights, device=device, show_progress=False)
    if metainfo and (weights is None or not inferencer.model.dataset_meta):
        inferencer.model.dataset_meta = dict(metainfo)
        inferencer.visualizer.dataset_meta = dict(metainfo)
    return inferencer


def main():
    args = parse_args()
    try:
        images, others = list_images(args.inputs)
    except FileNotFoundError as e:
        raise SystemExit(f'image_demo: {e}')
    if others:
        print(f'ignoring {len(others)} file(s) without an image extension: {", ".join(others[:5])}'
              f'{", ..." if len(others) > 5 else ""}')
    if not images:
        raise SystemExit(f'image_demo: no images in {args.inputs}')
    cfg = Config.fromfile(args.config)
    if args.weights is None:
        warnings.warn('no --weights given: drawing the predictions of a randomly initialised model')
        cfg.model.backbone.init_cfg = None
    inferencer = build_inferencer(cfg, cfg if args.weights is None else args.config, args.weights, args.device)
    kwargs = {}
    if cfg.get('default_scope') != 'mmseg':
        kwargs.update(pred_score_thr=args.score_thr, no_save_pred=True)
    vis_dir = osp.join(args.out_dir, 'vis')
    result = draw_each(inferencer, images, vis_dir, ImageLimits(args.min_side, args.max_pixels),
                       log=lambda line: print(line, flush=True), **kwargs)
    print(f'wrote {len(result.written)} of {len(images)} PNG visualisations to {vis_dir}')
    if result.failed:
        print(f'{len(result.failed)} skipped:')
        for image, reason in result.failed:
            print(f'  {image}: {reason}')
    sys.exit(min(len(result.failed), 100))


if __name__ == '__main__':
    main()
