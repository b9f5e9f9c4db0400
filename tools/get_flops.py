"""Parameters and FLOPs of a config at the input size the papers report.

    python tools/get_flops.py configs/mlla/mask-rcnn_mlla-t_fpn_1x_coco.py            # 1280x800 (W x H)
    python tools/get_flops.py configs/mlla/upernet_mlla-b_8xb2-160k_ade20k-512x512.py # 2048x512 (W x H)

Counting convention: see mlla_dense/utils/flops.py (fvcore's: a multiply-add is one FLOP; the linear-attention
matmuls are counted through the PyTorch reference; the RoI heads on 1000 / 100 proposals). Runs on the CPU.
"""
import argparse

from mlla_dense.utils.flops import model_complexity
from mlla_dense.utils.run_config import DictAction, load_config

DEFAULT_SHAPES = {'mmdet': (800, 1280), 'mmseg': (512, 2048)}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width (default: 800 1280 for detection, 512 2048 for segmentation)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    height, width = args.shape or DEFAULT_SHAPES[cfg.get('default_scope', 'mmdet')]
    result = model_complexity(cfg, height, width)
    print(f'{args.config}\n  input 3x{height}x{width}  params {result["params"] / 1e6:.2f} M  '
          f'FLOPs {result["flops"] / 1e9:.1f} G')


if __name__ == '__main__':
    main()
