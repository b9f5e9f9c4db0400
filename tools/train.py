"""Train a detection (mmdet) or segmentation (mmseg) config with mmengine's Runner.

One entry point for both: the config's ``default_scope`` picks the registries. The command line is
mmdet's tools/train.py:

    python tools/train.py configs/mlla/mask-rcnn_mlla-t_fpn_1x_coco.py --work-dir work_dirs/mrcnn_t --amp
    python tools/train.py CONFIG --resume                 # from the newest checkpoint of the work dir that loads
    python tools/train.py CONFIG --cfg-options model.backbone.init_cfg=None   # from scratch
"""
import argparse
import logging
import os

from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mlla_dense.datasets.check import stop_on_dataset_problems
from mlla_dense.utils.resume import checkpoint_problem, find_resume_checkpoint
from mlla_dense.utils.run_config import (DictAction, check_data, end_distributed, load_config,
                                        setup_cpu_distributed)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (dynamic loss scaling)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size (mmdet configs)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or without a path from the newest checkpoint of the '
                             'work dir that loads (none there: from scratch)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. model.backbone.drop_path_rate=0.2')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher (torchrun: pytorch)')
    parser.add_argument('--skip-dataset-check', action='store_true',
                        help='start without reading every image header and annotation first')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def resume_checkpoint(resume: str, work_dir: str):
    """The checkpoint ``--resume [PATH]`` continues from (None: from scratch); an error if it cannot."""
    if resume != 'auto':
        problem = checkpoint_problem(resume) if '://' not in resume else None  # remote files: mmengine checks
        if problem:
            raise SystemExit(f'--resume {resume}: cannot resume from this checkpoint: {problem}')
        return resume
    path = find_resume_checkpoint(work_dir, log=lambda line: print_log(line, 'current', logging.WARNING))
    print_log(f'Resuming from {path}' if path else f'No checkpoint in {work_dir} to resume from: training from '
              'scratch', 'current')
    return path


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    cfg.launcher = args.launcher
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg:
            raise SystemExit('--auto-scale-lr needs auto_scale_lr (enable, base_batch_size) in the config')
        cfg.auto_scale_lr.enable = True
    resume_from = resume_checkpoint(args.resume, cfg.work_dir) if args.resume is not None else None
    if resume_from is not None:
        cfg.resume, cfg.load_from = True, resume_from
    checkpoint_hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if checkpoint_hook and checkpoint_hook.get('type') == 'CheckpointHook':
        checkpoint_hook.type = 'SafeCheckpointHook'  # same arguments, checkpoints that survive a kill
    check_data(cfg)
    if not args.skip_dataset_check:
        stop_on_dataset_problems(cfg)
    setup_cpu_distributed(cfg)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    runner.train()
    end_distributed()


if __name__ == '__main__':
    main()
