"""What the tools (train.py, test.py, demo.py) share: loading a config with CLI overrides, checking that the
dataset is where the config says, and setting up torch.distributed on machines without a GPU."""
import os.path as osp
import warnings
from typing import Iterable, List

import torch
from mmengine.config import Config, DictAction  # noqa: F401  (DictAction re-exported for the tools)

LAYOUTS = {
    'CocoDataset': """data/coco/
  annotations/instances_train2017.json, annotations/instances_val2017.json
  train2017/*.jpg, val2017/*.jpg
Download train2017, val2017 and annotations_trainval2017 from https://cocodataset.org and unzip them there
(or link an existing copy: ln -s /path/to/coco data/coco).""",
    'ADE20KDataset': """data/ade/ADEChallengeData2016/
  images/training/*.jpg, images/validation/*.jpg
  annotations/training/*.png, annotations/validation/*.png
Download ADEChallengeData2016.zip from http://sceneparsing.csail.mit.edu and unzip it into data/ade/
(or link an existing copy: ln -s /path/to/ADEChallengeData2016 data/ade/ADEChallengeData2016).""",
    'shapes': """data/shapes/
  annotations/instances_train.json, annotations/instances_val.json
  images/train/*.jpg, images/val/*.jpg, semantic/train/*.png, semantic/val/*.png
Generate it with: python tools/make_shapes.py --out data/shapes""",
}


def load_config(path: str, cfg_options=None, work_dir=None) -> Config:
    """Config from ``path`` with ``--cfg-options`` merged and the work dir set as mmdet's tools do."""
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def _datasets(dataset_cfg) -> Iterable[dict]:
    """The leaf dataset configs under wrappers (RepeatDataset, ConcatDataset, ...)."""
    if 'dataset' in dataset_cfg:
        yield from _datasets(dataset_cfg['dataset'])
    elif 'datasets' in dataset_cfg:
        for sub in dataset_cfg['datasets']:
            yield from _datasets(sub)
    else:
        yield dataset_cfg


def missing_data(dataset_cfg) -> List[str]:
    """Paths a dataset config refers to (data root, annotation file, data prefixes) that do not exist."""
    missing = []
    for ds in _datasets(dataset_cfg):
        root = ds.get('data_root', '') or ''
        paths = [root] if root else []
        if ds.get('ann_file'):
            paths.append(osp.join(root, ds['ann_file']))
        for prefix in (ds.get('data_prefix') or {}).values():
            if isinstance(prefix, str) and prefix:
                paths.append(osp.join(root, prefix))
        missing += [p for p in paths if not osp.exists(p)]
    return list(dict.fromkeys(missing))


def check_data(cfg: Config, splits=('train_dataloader', 'val_dataloader')) -> None:
    """Stop with the expected folder layout and how to prepare it when a dataset is missing.

    The layout is the one the config names in ``dataset_layout`` (the shapes configs do), else the one of
    the dataset type."""
    for split in splits:
        loader = cfg.get(split)
        if not loader:
            continue
        missing = missing_data(loader['dataset'])
        if missing:
            key = cfg.get('dataset_layout') or next(iter(_datasets(loader['dataset']))).get('type', '')
            layout = LAYOUTS.get(key, 'see the data_root, ann_file and data_prefix entries of the config')
            raise SystemExit(f'{split}: dataset not found: {", ".join(missing)}\nExpected layout:\n{layout}')


def missing_tta(cfg: Config) -> List[str]:
    """The keys of a test-time augmentation (tta_model, tta_pipeline) that ``cfg`` lacks; mmseg's configs all
    inherit a tta_model, so a pipeline is what tells."""
    return [key for key in ('tta_model', 'tta_pipeline') if not cfg.get(key)]


def enable_tta(cfg: Config) -> None:
    """Test-time augmentation as mmdet's and mmseg's ``test.py --tta`` set it up: the model wrapped in the
    config's ``tta_model``, the test pipeline replaced by its ``tta_pipeline``. Stops with a message where either
    is missing (no defaults guessed), and silences, for the rest of the process, SegTTAModel's per-image warning."""
    missing = missing_tta(cfg)
    if missing:
        raise SystemExit(f'--tta needs {" and ".join(missing)} in the config (as in mmdet\'s and mmseg\'s configs)')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model
    # mmseg's SegTTAModel stores each merged label map as H x W, which mmengine's PixelData turns into 1 x H x W
    # with a warning per image; the result is what the metrics expect
    warnings.filterwarnings('ignore', message='The shape of value will convert from', category=UserWarning)


def setup_cpu_distributed(cfg: Config) -> None:
    """torch.distributed without GPUs: gloo, CPU DistributedDataParallel (mmengine assumes CUDA devices)."""
    if torch.cuda.is_available() or cfg.get('launcher', 'none') == 'none':
        return
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend='gloo')
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None,
                                 find_unused_parameters=cfg.get('find_unused_parameters', False))


def end_distributed() -> None:
    """Destroy the default process group once a run has succeeded.

    Left to the interpreter's exit, gloo's worker threads can outlive it and abort the process
    ("terminate called without an active exception") after the work is done, which a launcher reports as a failure.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
