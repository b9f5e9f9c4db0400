"""Generate the synthetic shapes dataset (COCO instances + semantic maps) from a seed.

    python tools/make_shapes.py --out data/shapes --num-train 1000 --num-val 100 --seed 0

The same arguments always give the same bytes. See mlla_dense/datasets/shapes.py for the layout.
"""
import argparse
import sys

from mlla_dense.datasets.shapes import ShapesConfig, write_shapes_dataset


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='data/shapes', help='output folder (must be empty or absent)')
    parser.add_argument('--num-train', type=int, default=1000)
    parser.add_argument('--num-val', type=int, default=100)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--min-size', type=int, default=ShapesConfig.min_size, help='smallest image side (px)')
    parser.add_argument('--max-size', type=int, default=ShapesConfig.max_size, help='largest image side (px)')
    parser.add_argument('--max-objects', type=int, default=ShapesConfig.max_objects, help='shapes per image')
    parser.add_argument('--overwrite', action='store_true', help='replace the content of --out')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = ShapesConfig(min_size=args.min_size, max_size=args.max_size, max_objects=args.max_objects)

    def progress(split, done, total):
        if done == total or done % 200 == 0:
            print(f'\r{split}: {done}/{total} images', end='\n' if done == total else '', flush=True)

    try:
        write_shapes_dataset(args.out, args.num_train, args.num_val, seed=args.seed, cfg=cfg,
                             overwrite=args.overwrite, progress=progress)
    except (ValueError, FileExistsError) as error:
        sys.exit(f'make_shapes: {error}')
    print(f'wrote {args.num_train} train and {args.num_val} val images to {args.out}')


if __name__ == '__main__':
    main()
