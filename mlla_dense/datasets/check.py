"""Check a config's datasets before a long run: every image and annotation the config will use is read, and
each problem is reported with its file and the reason, instead of a crash hours into training.

Two kinds of dataset are read: COCO-format instances (mmdet configs whose ann_file is a JSON file:
CocoDataset and its relatives) and semantic segmentation folders (mmseg configs; the dataset class itself lists
the image / label-map pairs). What is checked:

- images: the file is an image of at least one pixel (header: empty, non-image and truncated files are found;
  ``decode=True`` decodes the pixels too); for COCO, its size is the one the annotation file gives;
- COCO annotations: the image id exists, the box is four finite numbers, not empty and inside the image (1 pixel
  of tolerance), the category id is one of the file's categories, the config's classes are categories of the
  file, and, where the pipeline loads masks, the mask is polygons of at least 3 points or an RLE of the image's
  size (``decode=True`` decodes compressed RLEs);
- label maps: decoded (they are cheap): one channel, the image's size, every label a class index or the ignore
  index after reduce_zero_label and label_map, as mmseg's LoadAnnotations applies them.

tools/train.py runs it at start without ``decode``; tools/check_dataset.py decodes everything.
"""
import json
import math
import os
import os.path as osp
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
from PIL import Image

from mlla_dense.utils.image_files import ImageFileError, decode_image, read_header
from mlla_dense.utils.run_config import _datasets

BOX_TOLERANCE = 1.0  # pixels a box may reach past the image border (rounding in annotation tools)
PROGRESS_SECONDS = 10.0


@dataclass
class Problem:
    file: str
    reason: str
    kind: str  # image, annotation, box, mask, category, seg map, label


@dataclass
class DatasetCheck:
    """What was read (counts per kind of file or record), the problems found, and datasets not understood."""
    counts: Counter = field(default_factory=Counter)
    problems: List[Problem] = field(default_factory=list)
    unchecked: List[str] = field(default_factory=list)

    def summary(self) -> str:
        read = ', '.join(f'{n} {kind}' for kind, n in self.counts.items()) or 'nothing'
        if not self.problems:
            return f'dataset check: no problems ({read} read)'
        kinds = ', '.join(f'{n} {kind}' for kind, n in Counter(p.kind for p in self.problems).items())
        return f'dataset check: {len(self.problems)} problems ({kinds}) in {read}'

    def report(self, limit: Optional[int] = None) -> str:
        """One line per problem (the first ``limit``), the datasets not checked, then the summary."""
        lines = [f'{p.file}: {p.kind}: {p.reason}' for p in self.problems[:limit]]
        if limit is not None and len(self.problems) > limit:
            lines.append(f'... and {len(self.problems) - limit} more')
        lines += [f'not checked: {u}' for u in self.unchecked]
        return '\n'.join(lines + [self.summary()])


def check_datasets(cfg, splits: Sequence[str] = ('train_dataloader', 'val_dataloader'), decode: bool = False,
                   log: Callable[[str], None] = print) -> DatasetCheck:
    """Check the datasets of ``splits`` in ``cfg`` (each dataset once, wrappers unwrapped)."""
    result, seen = DatasetCheck(), set()
    for split in splits:
        loader = cfg.get(split)
        if not loader:
            continue
        for ds in _datasets(loader['dataset']):
            key = json.dumps({k: ds.get(k) for k in ('type', 'data_root', 'ann_file', 'data_prefix')},
                             sort_keys=True, default=str)
            if key in seen:
                continue
            seen.add(key)
            name = f'{split.replace("_dataloader", "")} ({ds.get("type")})'
            if cfg.get('default_scope') == 'mmdet' and str(ds.get('ann_file', '')).endswith('.json'):
                _check_coco(ds, decode, name, log, result)
            elif cfg.get('default_scope') == 'mmseg':
                _check_segmentation(ds, decode, name, log, result)
            else:
                result.unchecked.append(f'{name}: only COCO-format JSON (mmdet) and segmentation folders (mmseg) '
                                        'are read')
    return result


def stop_on_dataset_problems(cfg, splits: Sequence[str] = ('train_dataloader', 'val_dataloader')) -> None:
    """tools/train.py's start-up check (headers, annotations, label maps): stop with the problems, if any.
    Every process of a distributed run checks, so that all stop; only the first one prints its progress."""
    first = int(os.environ.get('RANK', '0')) == 0
    log = (lambda line: print(line, flush=True)) if first else (lambda line: None)
    result = check_datasets(cfg, splits, decode=False, log=log)
    if result.problems:
        raise SystemExit(f'{result.report(limit=20)}\nFix the dataset, or start anyway with '
                         '--skip-dataset-check; tools/check_dataset.py CONFIG lists every problem and decodes '
                         'every image.')
    log(result.summary())


def _run(name: str, items: list, what: str, check: Callable, log, result: DatasetCheck) -> None:
    """``check(item)`` (a list of Problems) for every item on a few threads (file reads and decoding release the
    GIL), with a progress line every PROGRESS_SECONDS."""
    start = last = time.monotonic()
    log(f'dataset check: {name}: {len(items)} {what}')
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for done, problems in enumerate(pool.map(check, items), 1):
            result.problems += problems
            if time.monotonic() - last > PROGRESS_SECONDS:
                last = time.monotonic()
                log(f'dataset check: {name}: {done}/{len(items)} {what}, {len(result.problems)} problems so far')
    log(f'dataset check: {name}: done in {time.monotonic() - start:.1f} s')


def _read_image(path: str, decode: bool, expected_size=None):
    """The image's header and its problems (None and one problem where it cannot be read)."""
    try:
        header = read_header(path)
        if decode:
            decode_image(path)
    except ImageFileError as e:
        return None, [Problem(path, str(e), 'image')]
    if expected_size and (header.width, header.height) != tuple(expected_size):
        return header, [Problem(path, f'the image is {header.width}x{header.height}, the annotations say '
                                      f'{expected_size[0]}x{expected_size[1]}', 'image')]
    return header, []


# COCO-format instances ---------------------------------------------------------------------------------------

def _check_coco(ds: dict, decode: bool, name: str, log, result: DatasetCheck) -> None:
    root = ds.get('data_root') or ''
    ann_file = osp.join(root, ds['ann_file'])
    img_dir = osp.join(root, (ds.get('data_prefix') or {}).get('img', ''))
    try:
        with open(ann_file) as f:
            coco = json.load(f)
        images, annotations, categories = (coco[k] for k in ('images', 'annotations', 'categories'))
        cat_ids = {c['id'] for c in categories}
        cat_names = {c['name'] for c in categories}
        image_by_id = {img['id']: img for img in images}
    except (OSError, ValueError, KeyError, TypeError) as e:
        reason = f'not a COCO annotation file: {type(e).__name__}: {e}'
        result.problems.append(Problem(ann_file, reason, 'annotation'))
        return
    for cls in (ds.get('metainfo') or {}).get('classes') or ():
        if cls not in cat_names:
            result.problems.append(Problem(ann_file, f'class {cls!r} of the config is not a category of the file',
                                           'category'))
    with_mask = any(str(t.get('type', '')).endswith('LoadAnnotations') and t.get('with_mask')
                    for t in ds.get('pipeline') or ())
    for ann in annotations:
        result.problems += _annotation_problems(ann, image_by_id, cat_ids, with_mask, decode, ann_file)
    result.counts['annotations'] += len(annotations)

    def check(img):
        if not isinstance(img.get('file_name'), str):
            return [Problem(ann_file, f'image id {img.get("id")} has no file_name', 'annotation')]
        return _read_image(osp.join(img_dir, img['file_name']), decode, (img.get('width'), img.get('height')))[1]

    _run(f'{name}: {ann_file}', images, 'images', check, log, result)
    result.counts['images'] += len(images)


def _annotation_problems(ann: dict, image_by_id: Dict, cat_ids: set, with_mask: bool, decode: bool,
                         ann_file: str) -> List[Problem]:
    image = image_by_id.get(ann.get('image_id'))
    if image is None:
        return [Problem(ann_file, f'annotation {ann.get("id")}: image id {ann.get("image_id")!r} is not in '
                                  '"images"', 'annotation')]
    where = f'annotation {ann.get("id")} of {image.get("file_name")}'
    problems = []
    if ann.get('category_id') not in cat_ids:
        problems.append(Problem(ann_file, f'{where}: category id {ann.get("category_id")!r} is not one of the '
                                          f'file\'s categories {sorted(cat_ids)}', 'category'))
    box_problem = _box_problem(ann.get('bbox'), image.get('width'), image.get('height'))
    if box_problem:
        problems.append(Problem(ann_file, f'{where}: {box_problem}', 'box'))
    if with_mask and 'segmentation' in ann:
        mask_problem = _mask_problem(ann['segmentation'], image.get('width'), image.get('height'), decode)
        if mask_problem:
            problems.append(Problem(ann_file, f'{where}: {mask_problem}', 'mask'))
    return problems


def _box_problem(box, width, height) -> str:
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(_finite(v) for v in box)):
        return f'the box {box!r} is not four finite numbers [x, y, w, h]'
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return f'empty box {box} (width or height <= 0)'
    if x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or x + w > width + BOX_TOLERANCE or y + h > height + BOX_TOLERANCE:
        return f'the box {box} [x, y, w, h] reaches outside the {width}x{height} image'
    return ''


def _mask_problem(segmentation, width, height, decode: bool) -> str:
    if isinstance(segmentation, list):
        if not segmentation:
            return 'no polygon'
        for polygon in segmentation:
            if not (isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
                    and all(_finite(v) for v in polygon)):
                return f'a polygon is not a list of at least 3 finite x, y pairs: {str(polygon)[:80]}'
        return ''
    if not isinstance(segmentation, dict) or 'counts' not in segmentation or 'size' not in segmentation:
        return f'neither polygons nor an RLE (dict with counts and size): {str(segmentation)[:80]}'
    if list(segmentation['size']) != [height, width]:
        return f'the RLE is of size {segmentation["size"]} (height, width), the image is {height}x{width} (h x w)'
    counts = segmentation['counts']
    if isinstance(counts, str) and decode:
        try:
            counts = rle_counts(counts)
        except ValueError as e:
            return f'the RLE does not decode: {e}'
    if isinstance(counts, list):
        if any(not isinstance(c, int) or c < 0 for c in counts):
            return 'the RLE has negative or non-integer counts'
        if sum(counts) != height * width:
            return f'the RLE covers {sum(counts)} pixels, the image has {height * width}'
    elif not isinstance(counts, str):
        return f'RLE counts are neither a list nor a string: {type(counts).__name__}'
    return ''


def rle_counts(encoded: str) -> List[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' rleFrString, which does not check its
    input: a corrupt string decodes to garbage or past the end of the mask)."""
    counts, p = [], 0
    while p < len(encoded):
        x = k = 0
        more = True
        while more:
            if p == len(encoded):
                raise ValueError('the string ends inside a number')
            c = ord(encoded[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f'character {encoded[p]!r} is not part of the RLE alphabet')
            x |= (c & 0x1f) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# semantic segmentation ---------------------------------------------------------------------------------------

def _check_segmentation(ds: dict, decode: bool, name: str, log, result: DatasetCheck) -> None:
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    try:
        with DefaultScope.overwrite_default_scope('mmseg'):  # another scope current (mmdet's) builds other classes
            dataset = DATASETS.build(dict(ds, pipeline=[], lazy_init=True))
        samples = dataset.load_data_list()
    except Exception as e:  # noqa: BLE001  whatever stops the dataset class from listing its files
        result.problems.append(Problem(ds.get('data_root') or '.', f'the dataset cannot list its files: '
                                                                    f'{type(e).__name__}: {e}', 'annotation'))
        return
    valid = _valid_raw_labels(len(dataset.metainfo['classes']), dataset.reduce_zero_label,
                              dataset.label_map, dataset.ignore_index)

    def check(sample):
        header, problems = _read_image(sample['img_path'], decode)
        return problems if header is None else _seg_map_problems(sample['seg_map_path'], header, valid)

    _run(name, samples, 'images and label maps', check, log, result)
    result.counts['images'] += len(samples)
    result.counts['label maps'] += len(samples)


def _valid_raw_labels(num_classes: int, reduce_zero_label: bool, label_map: Optional[dict],
                      ignore_index: int) -> np.ndarray:
    """Which values 0..255 of a label map are class indices or the ignore index once loaded (mmseg casts the
    map to uint8; above 255 nothing is valid)."""
    labels = np.arange(256)
    if reduce_zero_label:
        labels = np.where(labels == 0, 255, labels - 1)
        labels[labels == 254] = 255
    if label_map:
        labels = np.array([label_map.get(int(v), int(v)) for v in labels])
    return (labels < num_classes) | (labels == ignore_index)


def _seg_map_problems(path: str, image, valid: np.ndarray) -> List[Problem]:
    try:
        with Image.open(path) as seg:
            if seg.mode not in ('1', 'L', 'P', 'I', 'I;16', 'I;16B', 'I;16L'):
                return [Problem(path, f'the label map has mode {seg.mode} (colours?); expected one label per '
                                      'pixel (greyscale or palette indices)', 'seg map')]
            if seg.size != (image.width, image.height):
                return [Problem(path, f'the label map is {seg.width}x{seg.height}, its image is '
                                      f'{image.width}x{image.height}', 'seg map')]
            labels = np.asarray(seg)
    except FileNotFoundError:
        return [Problem(path, 'the label map is missing', 'seg map')]
    except (OSError, SyntaxError, ValueError) as e:
        return [Problem(path, f'the label map does not decode: {e}', 'seg map')]
    values = np.unique(labels)
    bad = [int(v) for v in values if v > 255 or not valid[int(v)]]
    if bad:
        allowed = np.flatnonzero(valid)
        return [Problem(path, f'labels {bad[:10]} are not classes; the config allows {_ranges(allowed)}',
                        'label')]
    return []


def _ranges(values: Iterable[int]) -> str:
    """'0-5, 255' for [0, 1, 2, 3, 4, 5, 255]."""
    runs = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ', '.join(f'{a}-{b}' if b > a else f'{a}' for a, b in runs)
