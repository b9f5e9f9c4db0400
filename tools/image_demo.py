"""Draw a model's predictions on images: boxes and masks (detection configs) or a segmentation overlay.

    python tools/image_demo.py demo.jpg configs/shapes/mask-rcnn_mlla-nano_fpn_demo_shapes.py \
        --weights work_dirs/demo/det/epoch_8.pth --out-dir work_dirs/demo/vis
    python tools/image_demo.py images/ CONFIG                      # no checkpoint: random weights, a warning

Runs through mmdet's DetInferencer or mmseg's MMSegInferencer (chosen by the config's default_scope) and
writes one PNG per image to OUT_DIR/vis/.
"""
import argparse
import os
import os.path as osp
import warnings

import torch
from mmengine.config import Config

from mlla_dense.utils.drawing import write_visualizations


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('config', help='model config')
    parser.add_argument('--weights', help='checkpoint; without it the model keeps random weights')
    parser.add_argument('--out-dir', default='work_dirs/image_demo', help='PNGs go to OUT_DIR/vis/')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection score threshold')
    return parser.parse_args()


def image_list(inputs):
    if osp.isdir(inputs):
        names = sorted(n for n in os.listdir(inputs) if n.lower().endswith(('.jpg', '.jpeg', '.png', '.bmp')))
        return [osp.join(inputs, n) for n in names]
    if not osp.isfile(inputs):
        raise SystemExit(f'image_demo: {inputs} is neither an image nor a folder')
    return [inputs]


def build_inferencer(cfg, config_path, weights, device):
    metainfo = cfg.get('test_dataloader', {}).get('dataset', {}).get('metainfo')
    if cfg.get('default_scope') == 'mmseg':
        from mmseg.apis import MMSegInferencer
        inferencer = MMSegInferencer(model=config_path, weights=weights, device=device)
    else:
        from mmdet.apis import DetInferencer
        inferencer = DetInferencer(model=config_path, weights=weights, device=device, show_progress=False)
    if metainfo and (weights is None or not inferencer.model.dataset_meta):
        inferencer.model.dataset_meta = dict(metainfo)
        inferencer.visualizer.dataset_meta = dict(metainfo)
    return inferencer


def main():
    args = parse_args()
    images = image_list(args.inputs)
    cfg = Config.fromfile(args.config)
    if args.weights is None:
        warnings.warn('no --weights given: drawing the predictions of a randomly initialised model')
        cfg.model.backbone.init_cfg = None
    inferencer = build_inferencer(cfg, cfg if args.weights is None else args.config, args.weights, args.device)
    kwargs = {}
    if cfg.get('default_scope') != 'mmseg':
        kwargs.update(pred_score_thr=args.score_thr, no_save_pred=True)
    vis_dir = osp.join(args.out_dir, 'vis')
    write_visualizations(inferencer, images, vis_dir, **kwargs)
    print(f'wrote {len(images)} PNG visualisations to {vis_dir}')


if __name__ == '__main__':
    main()
