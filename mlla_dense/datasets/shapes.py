"""The "shapes" dataset: textured images of coloured shapes, with COCO instance and semantic annotations.

Generated from a seed, so anyone can run the whole path (data -> train -> evaluate -> visualize) on any machine
in minutes. Each image has a textured background (gradients, stripes, blotches, noise) and 1..max_objects
shapes (circle, rectangle, triangle, star, cross) of varied size, colour and rotation; later shapes may
partly cover earlier ones, but never below half of their area. Instance masks are exactly the pixels painted
for each shape (no anti-aliasing), so the COCO masks, the boxes, the areas and the semantic maps all agree
with the image.

The ``restyled`` style draws the same kinds of scenes differently, to test whether a model learnt shapes
rather than the look of the training images: backgrounds the standard style never draws (checkerboards,
rings, radial gradients, without noise) and shapes with a two-colour gradient fill inside an outline of
contrasting brightness, instead of one flat colour.

Layout written by :func:`write_shapes_dataset` (val_restyled: the val split's kind of scenes, restyled)::

    OUT/images/{train,val,val_restyled}/<stem>.jpg
    OUT/annotations/instances_{train,val,val_restyled}.json   COCO instances, RLE masks, categories 1..5
    OUT/semantic/{train,val,val_restyled}/<stem>.png          0 = background, k = category id
"""
import json
import os
import os.path as osp
from dataclasses import dataclass, replace
from typing import List, Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils

CATEGORIES = ('circle', 'rectangle', 'triangle', 'star', 'cross')
STYLES = ('standard', 'restyled')
MIN_VISIBLE_FRACTION = 0.5
MIN_AREA = 40


@dataclass
class ShapesConfig:
    """Options of the generator: image sides in pixels, objects per image, their size as a fraction of the
    shorter image side, and the drawing style (one of STYLES)."""
    min_size: int = 96
    max_size: int = 144
    max_objects: int = 3
    min_object: float = 0.18
    max_object: float = 0.45
    style: str = 'standard'

    def validate(self):
        if self.style not in STYLES:
            raise ValueError(f'style must be one of {STYLES}, got {self.style!r}')
        if not 32 <= self.min_size <= self.max_size:
            raise ValueError(f'image sizes must satisfy 32 <= min_size <= max_size, got {self.min_size}, '
                             f'{self.max_size}')
        if self.max_objects < 1:
            raise ValueError(f'max_objects must be at least 1, got {self.max_objects}')
        if not 0 < self.min_object <= self.max_object <= 1:
            raise ValueError('object sizes (fractions of the image side) must satisfy '
                             f'0 < min_object <= max_object <= 1, got {self.min_object}, {self.max_object}')


@dataclass
class Sample:
    image: np.ndarray                 # H x W x 3 uint8, BGR (OpenCV order)
    masks: List[np.ndarray]           # H x W bool, visible pixels of each instance
    labels: List[int]                 # category ids, 1-based
    semantic: np.ndarray              # H x W uint8
    full_areas: List[int]             # area of each shape before later shapes covered part of it


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = rng.integers(4)
    base = rng.uniform(0, 255, 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # linear gradient between two colours
        angle = rng.uniform(0, np.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy)
        t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
        img = base * (1 - t[..., None]) + rng.uniform(0, 255, 3) * t[..., None]
    elif kind == 1:  # stripes
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 24)
        t = (np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi / period) + 1) / 2
        img = base * (1 - t[..., None]) + rng.uniform(0, 255, 3) * t[..., None]
    elif kind == 2:  # low-frequency blotches
        coarse = rng.uniform(0, 255, (max(2, h // 24), max(2, w // 24), 3)).astype(np.float32)
        img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    else:  # flat colour
        img = np.broadcast_to(base, (h, w, 3)).astype(np.float32)
    img = img + rng.normal(0, rng.uniform(2, 14), (h, w, 3))
    return np.clip(img, 0, 255)


def _restyled_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A background of the restyled style: checkerboard, rings or radial gradient, noise-free."""
    kind = rng.integers(3)
    first = rng.uniform(0, 255, 3)
    second = np.clip(first + rng.choice([-1, 1], 3) * rng.uniform(30, 70, 3), 0, 255)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # checkerboard
        cell = rng.uniform(5, 14)
        t = ((xx // cell + yy // cell) % 2).astype(np.float32)
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        radius = np.hypot(xx - cx, yy - cy)
        t = ((np.sin(radius * 2 * np.pi / rng.uniform(8, 20)) + 1) / 2 if kind == 1  # rings
             else radius / max(float(radius.max()), 1.0))                               # radial gradient
    return first * (1 - t[..., None]) + second * t[..., None]


def _paint_restyled(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    """Paint a shape of the restyled style: a gradient from ``colour`` to a second colour across the shape, and
    a 2-pixel outline darker or lighter than the fill. Only pixels of ``mask`` change."""
    ys, xs = np.nonzero(mask)
    angle = rng.uniform(0, 2 * np.pi)
    t = np.cos(angle) * xs + np.sin(angle) * ys
    t = ((t - t.min()) / max(float(np.ptp(t)), 1.0))[:, None]
    fill = colour * (1 - t) + np.clip(colour + rng.uniform(-90, 90, 3), 0, 255) * t
    image[ys, xs] = fill
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    outline = mask & ~inner
    image[outline] = (40, 40, 40) if colour.mean() > 128 else (235, 235, 235)


def _polygon(rng: np.random.Generator, category: str, cx: float, cy: float, r: float) -> np.ndarray:
    """Vertices (K, 2) of a rotated shape of radius ~r centred at (cx, cy)."""
    rot = rng.uniform(0, 2 * np.pi)
    if category == 'circle':
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    elif category == 'rectangle':
        a = rng.uniform(0.45, 1.0)
        pts = np.array([[-1, -a], [1, -a], [1, a], [-1, a]]) * r
    elif category == 'triangle':
        t = np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.25, 0.25, 3)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    elif category == 'star':
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        radius = np.where(np.arange(10) % 2 == 0, r, r * 0.42)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * radius[:, None]
    else:  # cross
        a = 0.32
        pts = np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1], [-a, a],
                        [-1, a], [-1, -a], [-a, -a]]) * r
    if category != 'circle':
        c, s = np.cos(rot), np.sin(rot)
        pts = pts @ np.array([[c, s], [-s, c]])
    return pts + np.array([cx, cy])


def _distinct_colour(rng: np.random.Generator, behind: np.ndarray) -> np.ndarray:
    """A colour at least 80 (RGB distance) away from the mean of the pixels it will cover."""
    for _ in range(50):
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(colour - behind) > 80:
            return colour
    return 255 - behind


def render_sample(seed: int, cfg: ShapesConfig = ShapesConfig()) -> Sample:
    """The image and annotations of one sample; the same seed always gives the same sample."""
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(cfg.min_size, cfg.max_size + 1, 2))
    restyled = cfg.style == 'restyled'
    image = (_restyled_background if restyled else _background)(rng, h, w)
    instance = np.zeros((h, w), np.int32)          # 0 = background, i + 1 = i-th kept shape
    labels, full_areas = [], []
    for _ in range(int(rng.integers(1, cfg.max_objects + 1))):
        for _attempt in range(20):
            category = int(rng.integers(len(CATEGORIES)))
            r = rng.uniform(cfg.min_object, cfg.max_object) * min(h, w) / 2
            cx, cy = rng.uniform(r * 0.6, w - r * 0.6), rng.uniform(r * 0.6, h - r * 0.6)
            mask = np.zeros((h, w), np.uint8)
            cv2.fillPoly(mask, [np.round(_polygon(rng, CATEGORIES[category], cx, cy, r)).astype(np.int32)], 1)
            mask = mask.astype(bool)
            if mask.sum() < MIN_AREA:
                continue
            covered = np.bincount(instance[mask], minlength=len(labels) + 1)[1:]
            visible = np.bincount(instance.ravel(), minlength=len(labels) + 1)[1:] - covered
            if any(v < max(MIN_VISIBLE_FRACTION * a, MIN_AREA) for v, a in zip(visible, full_areas)):
                continue
            colour = _distinct_colour(rng, image[mask].mean(0))
            if restyled:
                _paint_restyled(rng, image, mask, colour)
            else:
                texture = rng.normal(0, rng.uniform(0, 10), (int(mask.sum()), 3))
                image[mask] = np.clip(colour + texture, 0, 255)
            instance[mask] = len(labels) + 1
            labels.append(category + 1)
            full_areas.append(int(mask.sum()))
            break
    masks = [instance == i + 1 for i in range(len(labels))]
    semantic = np.zeros((h, w), np.uint8)
    for m, label in zip(masks, labels):
        semantic[m] = label
    return Sample(image.astype(np.uint8), masks, labels, semantic, full_areas)


def coco_annotations(sample: Sample, image_id: int, first_ann_id: int) -> List[dict]:
    """COCO instance annotations (RLE masks, tight boxes, exact areas) of one sample."""
    anns = []
    for k, (m, label) in enumerate(zip(sample.masks, sample.labels)):
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        ys, xs = np.nonzero(m)
        x0, y0 = int(xs.min()), int(ys.min())
        anns.append(dict(id=first_ann_id + k, image_id=image_id, category_id=label, iscrowd=0,
                         area=int(m.sum()),
                         bbox=[x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
                         segmentation=dict(size=rle['size'], counts=rle['counts'].decode('ascii'))))
    return anns


def split_seeds(seed: int, *counts: int) -> List[List[int]]:
    """Per-image seeds of consecutive splits of ``counts`` images each, derived from one seed (a split's seeds do
    not depend on the splits after it)."""
    seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(sum(counts), dtype=np.uint64)]
    bounds = np.cumsum((0,) + counts)
    return [seeds[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def write_split(out: str, split: str, seeds: Sequence[int], cfg: ShapesConfig, progress=None) -> None:
    """Render one split (one image per seed) into ``out``'s layout."""
    for sub in ('images', 'semantic'):
        os.makedirs(osp.join(out, sub, split), exist_ok=True)
    os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
    images, annotations = [], []
    for i, seed in enumerate(seeds):
        sample = render_sample(seed, cfg)
        stem = f'{split}_{i:06d}'
        h, w = sample.semantic.shape
        cv2.imwrite(osp.join(out, 'images', split, stem + '.jpg'), sample.image,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(osp.join(out, 'semantic', split, stem + '.png'), sample.semantic)
        images.append(dict(id=i + 1, file_name=stem + '.jpg', height=h, width=w))
        annotations += coco_annotations(sample, i + 1, len(annotations) + 1)
        if progress is not None:
            progress(split, i + 1, len(seeds))
    coco = dict(images=images, annotations=annotations,
                categories=[dict(id=k + 1, name=name, supercategory='shape') for k, name in enumerate(CATEGORIES)],
                info=dict(description='mlla_dense synthetic shapes'))
    with open(osp.join(out, 'annotations', f'instances_{split}.json'), 'w') as f:
        json.dump(coco, f, sort_keys=True)


def write_shapes_dataset(out: str, num_train: int, num_val: int, seed: int = 0,
                         cfg: ShapesConfig = ShapesConfig(), overwrite: bool = False, progress=None,
                         num_restyled: int = 0) -> None:
    """Generate the dataset into ``out``; refuses a folder holding anything else unless ``overwrite``.

    ``num_restyled`` > 0 adds the val_restyled split: images like val's (other seeds) in the restyled style."""
    cfg.validate()
    if num_train < 1 or num_val < 1:
        raise ValueError(f'need at least one train and one val image, got {num_train} and {num_val}')
    if osp.isdir(out) and os.listdir(out) and not overwrite:
        raise FileExistsError(f'{out} is not empty; pass overwrite=True (--overwrite) to replace its content')
    if overwrite and osp.isdir(out):
        import shutil
        shutil.rmtree(out)
    train_seeds, val_seeds, restyled_seeds = split_seeds(seed, num_train, num_val, num_restyled)
    write_split(out, 'train', train_seeds, cfg, progress)
    write_split(out, 'val', val_seeds, cfg, progress)
    if num_restyled:
        write_split(out, 'val_restyled', restyled_seeds, replace(cfg, style='restyled'), progress)
