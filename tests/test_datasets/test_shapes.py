"""The generated shapes dataset: determinism, format validity (COCO, masks, boxes, areas, semantic maps) in both
styles, and that the restyled style draws differently."""
import hashlib
import os

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mlla_dense.datasets.shapes import (CATEGORIES, ShapesConfig, render_sample, split_seeds,
                                        write_shapes_dataset)

CFG = ShapesConfig(min_size=64, max_size=112, max_objects=4)
RESTYLED = ShapesConfig(min_size=64, max_size=112, max_objects=4, style='restyled')


def digest(folder):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            h.update(name.encode())
            with open(os.path.join(root, name), 'rb') as f:
                h.update(f.read())
    return h.hexdigest()


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp('shapes') / 'data'
    write_shapes_dataset(str(out), 30, 6, seed=7, cfg=CFG, num_restyled=5)
    return out


def test_same_seed_same_bytes(dataset, tmp_path):
    write_shapes_dataset(str(tmp_path / 'again'), 30, 6, seed=7, cfg=CFG, num_restyled=5)
    assert digest(dataset) == digest(tmp_path / 'again')
    write_shapes_dataset(str(tmp_path / 'standard'), 30, 6, seed=7, cfg=CFG)   # val_restyled changes no other split
    for sub in ('images/train', 'images/val', 'semantic/val'):
        assert digest(dataset / sub) == digest(tmp_path / 'standard' / sub)
    write_shapes_dataset(str(tmp_path / 'other'), 30, 6, seed=8, cfg=CFG)
    assert digest(dataset) != digest(tmp_path / 'other')


@pytest.mark.parametrize('split', ['train', 'val', 'val_restyled'])
def test_coco_annotations_agree_with_drawn_pixels(dataset, split):
    coco = COCO(str(dataset / f'annotations/instances_{split}.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(CATEGORIES)
    seeds = split_seeds(7, 30, 6, 5)[['train', 'val', 'val_restyled'].index(split)]
    assert len(coco.getImgIds()) == len(seeds)
    used = set()
    for image_id, seed in zip(sorted(coco.getImgIds()), seeds):
        info = coco.loadImgs(image_id)[0]
        sample = render_sample(seed, RESTYLED if split == 'val_restyled' else CFG)
        image = cv2.imread(str(dataset / 'images' / split / info['file_name']))
        assert image.shape[:2] == (info['height'], info['width']) == sample.semantic.shape
        semantic = cv2.imread(str(dataset / 'semantic' / split / info['file_name'].replace('.jpg', '.png')),
                              cv2.IMREAD_UNCHANGED)
        assert np.array_equal(semantic, sample.semantic)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert len(anns) == len(sample.masks) >= 1
        union = np.zeros_like(semantic)
        for ann, drawn, label in zip(anns, sample.masks, sample.labels):
            decoded = mask_utils.decode(ann['segmentation']).astype(bool)
            assert np.array_equal(decoded, drawn)                      # mask == the pixels painted
            assert ann['category_id'] == label and ann['iscrowd'] == 0
            assert ann['area'] == decoded.sum() == int(mask_utils.area(ann['segmentation']))
            x, y, w, h = ann['bbox']
            ys, xs = np.nonzero(decoded)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)   # tight box
            assert not (union[decoded] != 0).any()                     # instances do not overlap
            union[decoded] = label
            used.add(label)
        assert np.array_equal(union, semantic)                         # semantic map == instance masks
    if split == 'train':
        assert len(used) >= 3


def test_shapes_are_painted_and_partly_occluded():
    """Each mask is painted in one colour (plus light texture), and occlusion happens but stays partial."""
    occluded = total = 0
    for seed in range(40):
        sample = render_sample(seed, ShapesConfig(max_objects=6))
        for m, full in zip(sample.masks, sample.full_areas):
            pixels = sample.image[m].astype(float)
            assert pixels.std(0).max() < 25
            assert 0.5 * full <= m.sum() <= full
            occluded += m.sum() < full
            total += 1
    assert 0 < occluded < total


def outline_fraction(sample):
    """The fraction of the shapes' edge pixels (inside the masks) painted in the restyled outline greys."""
    edges = outline = 0
    for m in sample.masks:
        edge = m & ~cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        grey = np.isin(sample.image[edge], (40, 235)).all(1)
        edges, outline = edges + edge.sum(), outline + grey.sum()
    return outline / edges


def test_restyled_draws_differently():
    """Same seed, same sizes: the restyled image differs, its shapes are outlined and gradient-filled (no flat
    colour), the standard ones are not."""
    for seed in range(20):
        standard, restyled = render_sample(seed, CFG), render_sample(seed, RESTYLED)
        assert standard.image.shape == restyled.image.shape
        assert np.abs(standard.image.astype(int) - restyled.image.astype(int)).mean() > 20
        assert outline_fraction(restyled) > 0.6 and outline_fraction(standard) < 0.05
        for m in restyled.masks:
            inside = cv2.erode(m.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
            if inside.sum() > 50:
                assert not np.isin(restyled.image[inside], (40, 235)).all(1).any()   # the fill is no outline


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='at least one'):
        write_shapes_dataset(str(tmp_path / 'a'), 0, 1)
    with pytest.raises(ValueError, match='min_size <= max_size'):
        write_shapes_dataset(str(tmp_path / 'b'), 1, 1, cfg=ShapesConfig(min_size=200, max_size=100))
    with pytest.raises(ValueError, match='style'):
        write_shapes_dataset(str(tmp_path / 'e'), 1, 1, cfg=ShapesConfig(style='sketchy'))
    with pytest.raises(ValueError, match='max_objects'):
        write_shapes_dataset(str(tmp_path / 'c'), 1, 1, cfg=ShapesConfig(max_objects=0))
    (tmp_path / 'd').mkdir()
    (tmp_path / 'd' / 'notes.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='overwrite'):
        write_shapes_dataset(str(tmp_path / 'd'), 1, 1)
    write_shapes_dataset(str(tmp_path / 'd'), 1, 1, overwrite=True)
    assert not (tmp_path / 'd' / 'notes.txt').exists()
