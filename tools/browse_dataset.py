"""Draw the ground truth of a config's dataset (after its training pipeline) to PNG files.

    python tools/browse_dataset.py configs/shapes/mask-rcnn_mlla-nano_fpn_demo_shapes.py --out-dir vis --num 10
"""
import argparse
import os
import os.path as osp

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


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    loader = f'{args.split}_dataloader'
    check_data(cfg, splits=(loader,))
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['DATASETS', 'VISUALIZERS'])
    dataset = registry.DATASETS.build(cfg[loader].dataset)
    visualizer = registry.VISUALIZERS.build(cfg.visualizer)
    visualizer.dataset_meta = dataset.metainfo
    os.makedirs(args.out_dir, exist_ok=True)
    for i in range(min(args.num, len(dataset))):
        item = dataset[i]
        image = item['inputs'].permute(1, 2, 0).numpy()[..., ::-1]  # packed BGR CHW -> RGB HWC
        name = osp.splitext(osp.basename(item['data_samples'].img_path))[0]
        visualizer.add_datasample(name, image, data_sample=item['data_samples'], draw_pred=False, show=False,
                                  out_file=osp.join(args.out_dir, f'{name}.png'))
    print(f'wrote {min(args.num, len(dataset))} images to {args.out_dir}')


if __name__ == '__main__':
    main()
