"""Evaluate a checkpoint of a detection (mmdet) or segmentation (mmseg) config with mmengine's Runner.

    python tools/test.py configs/mlla/mask-rcnn_mlla-t_fpn_1x_coco.py work_dirs/mrcnn_t/epoch_12.pth
    python tools/test.py CONFIG CHECKPOINT --show-dir vis      # also draw the predictions
    python tools/test.py CONFIG CHECKPOINT --tta               # test-time augmentation (the config's tta_model)
"""
import argparse
import os

from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mlla_dense.utils.run_config import (DictAction, check_data, enable_tta, end_distributed, load_config,
                                        setup_cpu_distributed)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument('--show-dir', help='save images with drawn predictions here: for detection inside the '
                                           'work dir\'s timestamped folder where relative (as mmdet), for '
                                           'segmentation in SHOW_DIR/vis_data/vis_image/ (as mmseg)')
    parser.add_argument('--out', help='also dump the raw predictions to this pickle file (as mmdet\'s --out)')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation: the config\'s tta_model and tta_pipeline (as mmdet\'s and '
                             'mmseg\'s --tta)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def enable_visualization(cfg, show_dir):
    """Turn on the scope's visualization hook (added when the config has none) and point it at ``show_dir``."""
    seg = cfg.get('default_scope') == 'mmseg'
    if cfg.default_hooks.get('visualization') is None:
        cfg.default_hooks.visualization = dict(type='SegVisualizationHook' if seg else 'DetVisualizationHook')
    hook = cfg.default_hooks.visualization
    hook.draw = True
    if seg:
        hook.interval = 1
        cfg.visualizer.save_dir = show_dir
    else:
        hook.test_out_dir = show_dir


def add_dump(cfg, out):
    """Append a metric that pickles every prediction to ``out`` (mmdet's DumpDetResults, mmengine's DumpResults)."""
    if not out.endswith(('.pkl', '.pickle')):
        raise SystemExit(f'--out must be a .pkl or .pickle file, got {out}')
    dump = dict(type='DumpDetResults' if cfg.get('default_scope') == 'mmdet' else 'DumpResults', out_file_path=out)
    evaluator = cfg.test_evaluator
    cfg.test_evaluator = [*evaluator, dump] if isinstance(evaluator, (list, tuple)) else [evaluator, dump]


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    cfg.launcher = args.launcher
    cfg.load_from = args.checkpoint
    if args.show_dir:
        enable_visualization(cfg, args.show_dir)
    if args.out:
        add_dump(cfg, args.out)
    if args.tta:
        enable_tta(cfg)
    check_data(cfg, splits=('test_dataloader',))
    setup_cpu_distributed(cfg)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    runner.test()
    end_distributed()


if __name__ == '__main__':
    main()
