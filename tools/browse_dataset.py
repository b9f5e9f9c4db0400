"""Draw the ground truth of a config's dataset (after its training pipeline) to PNG files.

    python tools/browse_dataset.py configs/shapes/mask-rcnn_mlla-nano_fpn_demo_shapes.py --out-dir vis --num 10
"""
import argparse
import os
import os.path as osp

import mmcv
import numpy as np
from mmengine.registry import init_default_scope

from mlla_dense.utils.run_config import DictAction, check_data, load_config


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--out-dir', default='work_dirs/browse_dataset')
    parser.add_argument('--num', type=int, default=10, help='how many samples to draw')
    parser.add_argument('--split', default='train', choices=['train', 'val', 'test'])
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    return parser.parse_args()


def drawable(image, sample):
    """(image, sample) as the visualizers draw them: boxes as a tensor (the pipeline leaves box objects), the
    image at the size of a label map that a test pipeline loads at the original resolution."""
    instances = sample.get('gt_instances')
    if instances is not None and hasattr(instances.get('bboxes'), 'tensor'):
        instances.bboxes = instances.bboxes.tensor
    label_map = sample.get('gt_sem_seg')
    if label_map is not None and tuple(label_map.shape) != image.shape[:2]:
        image = mmcv.imresize(image, tuple(label_map.shape)[::-1])
    return image, sample


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    loader = f'{args.split}_dataloader'
    check_data(cfg, splits=(loader,))
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['DATASETS', 'VISUALIZERS'])
    dataset = registry.DATASETS.build(cfg[loader].dataset)
    visualizer = registry.VISUALIZERS.build(dict(cfg.visualizer, vis_backends=[]))  # PNGs only, via out_file
    visualizer.dataset_meta = dataset.metainfo
    os.makedirs(args.out_dir, exist_ok=True)
    for i in range(min(args.num, len(dataset))):
        item = dataset[i]
        image = np.ascontiguousarray(item['inputs'].permute(1, 2, 0).numpy()[..., ::-1])  # BGR CHW -> RGB HWC
        image, sample = drawable(image, item['data_samples'])
        name = osp.splitext(osp.basename(sample.img_path))[0]
        visualizer.add_datasample(name, image, data_sample=sample, draw_pred=False, show=False,
                                  out_file=osp.join(args.out_dir, f'{name}.png'))
    print(f'wrote {min(args.num, len(dataset))} images to {args.out_dir}')


if __name__ == '__main__':
    main()
