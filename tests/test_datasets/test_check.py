"""The dataset check: a clean shapes dataset passes; each planted problem (one per kind) is reported with its
file and reason, and nothing else is."""
import json
import os.path as osp

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from helpers import DET_DEMO, SEG_DEMO, make_tiny_shapes
from mlla_dense.datasets.check import check_datasets, rle_counts
from mlla_dense.utils.run_config import load_config


def config(path, root):
    root = str(root).rstrip('/') + '/'
    return load_config(path, {f'{s}_dataloader.dataset.data_root': root for s in ('train', 'val', 'test')})


def check(cfg, decode=True):
    return check_datasets(cfg, ('train_dataloader', 'val_dataloader'), decode=decode, log=lambda line: None)


def truncate(path):
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_tiny_shapes(tmp_path_factory.mktemp('shapes') / 'data', num_train=8, num_val=2)


@pytest.mark.parametrize('path', [DET_DEMO, SEG_DEMO], ids=['det', 'seg'])
@pytest.mark.parametrize('decode', [True, False], ids=['decode', 'headers'])
def test_clean_dataset_passes(shapes, path, decode):
    result = check(config(path, shapes), decode)
    assert result.problems == [] and not result.unchecked
    assert result.counts['images'] == 10


def test_segmentation_check_under_another_default_scope(shapes):
    """A detection run earlier in the process leaves mmdet's scope current; the check still builds mmseg's
    dataset class."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        result = check(config(SEG_DEMO, shapes), False)
    assert result.problems == [] and result.counts['images'] == 10


def test_coco_problems_are_each_reported(shapes, tmp_path):
    root = tmp_path / 'data'
    make_tiny_shapes(root, num_train=8, num_val=2)
    ann_path = root / 'annotations/instances_train.json'
    coco = json.loads(ann_path.read_text())
    images = {img['id']: img for img in coco['images']}
    names = [img['file_name'] for img in coco['images']]
    (root / 'images/train' / names[0]).write_bytes(b'')
    truncate(root / 'images/train' / names[1])
    (root / 'images/train' / names[2]).write_text('not an image\n')
    anns = [a for a in coco['annotations'] if images[a['image_id']]['file_name'] not in names[:3]]
    w = images[anns[0]['image_id']]['width']
    anns[0]['bbox'][0] = w - 2                      # reaches outside the image
    anns[1]['bbox'][3] = 0                          # empty
    anns[2]['category_id'] = 99                     # unknown category
    anns[3]['segmentation'] = {'size': [5, 5], 'counts': anns[3]['segmentation']['counts']}  # wrong size
    anns[4]['segmentation']['counts'] = anns[4]['segmentation']['counts'][:-3] + '~~~'  # corrupt RLE string
    ann_path.write_text(json.dumps(coco))

    problems = check(config(DET_DEMO, root)).problems
    found = {(osp.basename(p.file), p.kind): p.reason for p in problems}
    expected_keys = {(names[0], 'image'), (names[1], 'image'), (names[2], 'image')}
    assert expected_keys <= set(found)
    assert 'empty' in found[(names[0], 'image')]
    assert 'truncated' in found[(names[1], 'image')]
    assert 'not an image' in found[(names[2], 'image')]
    annotation_problems = [p for p in problems if p.file == str(ann_path)]
    by_kind = {p.kind: [] for p in annotation_problems}
    for p in annotation_problems:
        by_kind[p.kind].append(p.reason)
    assert sorted((k, len(v)) for k, v in by_kind.items()) == [('box', 2), ('category', 1), ('mask', 2)]
    for i, kind, words in [(0, 'box', 'outside'), (1, 'box', 'empty'), (2, 'category', '99'),
                           (3, 'mask', 'size [5, 5]'), (4, 'mask', 'does not decode')]:
        assert any(f'annotation {anns[i]["id"]} ' in r and words in r for r in by_kind[kind]), (i, by_kind)
    assert len(problems) == 3 + 5


def test_headers_only_check_skips_rle_decoding(tmp_path):
    """Without decode, a corrupt compressed RLE of the right size is not read (train.py's quick check)."""
    root = tmp_path / 'data'
    make_tiny_shapes(root, num_train=2, num_val=1)
    ann_path = root / 'annotations/instances_train.json'
    coco = json.loads(ann_path.read_text())
    coco['annotations'][0]['segmentation']['counts'] = '~~~'
    ann_path.write_text(json.dumps(coco))
    cfg = config(DET_DEMO, root)
    assert check(cfg, decode=False).problems == []
    assert [p.kind for p in check(cfg, decode=True).problems] == ['mask']


def test_segmentation_problems_are_each_reported(tmp_path):
    root = tmp_path / 'data'
    make_tiny_shapes(root, num_train=8, num_val=2)
    maps = sorted((root / 'semantic/train').iterdir())
    seg = cv2.imread(str(maps[0]), cv2.IMREAD_UNCHANGED)
    h, w = seg.shape
    cv2.imwrite(str(maps[0]), seg[:-3])                         # wrong size
    seg = cv2.imread(str(maps[1]), cv2.IMREAD_UNCHANGED)
    seg[0, 0] = 9                                               # classes are 0..5
    cv2.imwrite(str(maps[1]), seg)
    cv2.imwrite(str(maps[2]), np.stack([cv2.imread(str(maps[2]), cv2.IMREAD_UNCHANGED)] * 3, -1))  # colours
    maps[3].unlink()                                            # missing
    image = root / 'images/train' / (maps[4].stem + '.jpg')
    image.write_text('not an image\n')

    problems = check(config(SEG_DEMO, root)).problems
    found = {(osp.basename(p.file), p.kind): p.reason for p in problems}
    assert f'is {w}x{h - 3}, its image is {w}x{h}' in found[(maps[0].name, 'seg map')]
    assert '[9]' in found[(maps[1].name, 'label')] and '0-5, 255' in found[(maps[1].name, 'label')]
    assert 'mode RGB' in found[(maps[2].name, 'seg map')]
    assert 'missing' in found[(maps[3].name, 'seg map')]
    assert 'not an image' in found[(image.name, 'image')]
    assert len(problems) == 5


def test_reduce_zero_label_shifts_the_valid_labels(tmp_path):
    """With reduce_zero_label, 0 becomes ignored and k becomes k - 1: 6 is then valid for 6 classes, 7 not."""
    root = tmp_path / 'data'
    make_tiny_shapes(root, num_train=2, num_val=1)
    maps = sorted((root / 'semantic/train').iterdir())
    seg = cv2.imread(str(maps[0]), cv2.IMREAD_UNCHANGED)
    seg[0, 0], seg[0, 1] = 6, 7
    cv2.imwrite(str(maps[0]), seg)
    cfg = config(SEG_DEMO, root)
    for split in ('train', 'val'):
        cfg[f'{split}_dataloader'].dataset.reduce_zero_label = True
    problems = check(cfg).problems
    assert len(problems) == 1 and '[7]' in problems[0].reason


def test_rle_counts_match_the_mask_runs():
    rng = np.random.default_rng(0)
    mask = np.asfortranarray((rng.random((37, 53)) > 0.7).astype(np.uint8))
    encoded = mask_utils.encode(mask)['counts'].decode()
    flat = mask.flatten(order='F')
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    if flat[0] == 1:
        runs = [0] + runs
    assert rle_counts(encoded) == runs
    with pytest.raises(ValueError, match='ends inside'):
        rle_counts(encoded + 'o')  # 'o' (63) continues a number that never ends
