"""Read every image and annotation a config will use and report each problem with its file and the reason.

    python tools/check_dataset.py configs/shapes/mask-rcnn_mlla-nano_fpn_demo_shapes.py
    python tools/check_dataset.py configs/mlla/upernet_mlla-t_8xb2-160k_ade20k-512x512.py --splits train

Images that do not decode (empty, truncated, not images), COCO boxes outside the image or empty, masks that
do not decode or are not of the image's size, unknown category ids, label maps of the wrong size or with
labels outside the classes (mlla_dense/datasets/check.py lists every check). tools/train.py runs the same check
at start, reading image headers only (--skip-dataset-check turns it off); this tool decodes every image.

Exit status: 0 when no problem was found, 1 otherwise.
"""
import argparse

from mlla_dense.datasets.check import check_datasets
from mlla_dense.utils.run_config import DictAction, check_data, load_config


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--splits', nargs='+', default=['train', 'val', 'test'], choices=['train', 'val', 'test'])
    parser.add_argument('--headers-only', action='store_true',
                        help="read image headers instead of decoding the pixels (train.py's quick check)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    splits = [f'{s}_dataloader' for s in args.splits]
    check_data(cfg, splits=splits)
    result = check_datasets(cfg, splits, decode=not args.headers_only, log=lambda line: print(line, flush=True))
    print(result.report())
    raise SystemExit(1 if result.problems else 0)


if __name__ == '__main__':
    main()
