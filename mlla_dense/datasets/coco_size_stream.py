"""A COCO-like stream of training batch sizes, for choosing shape buckets and timing steps without COCO.

COCO train2017 has no fixed size: almost every image has a long side of 640 px, and the aspect ratios
(width / height) cluster at 4:3 landscape (640x480, about half the images) and 3:4 portrait (480x640, about a
fifth), with smaller peaks at 3:2 / 2:3 (640x427), 16:9 and 1:1, and a tail spread over 0.5..2. The mixture
below approximates that spread (shares are rounded estimates, not COCO's exact histogram); it is seeded, so a
stream is reproducible. Two training pipelines resize the images:

- ``single-scale``: keep-ratio resize into 1333x800 (mmdet's Mask R-CNN 1x recipe, the VMamba 1x configs);
- ``ms-crop``: the DETR-style multi-scale + crop augmentation of the MLLA configs and the 3x recipes: half of
  the images resized to a short side of 480..800 (step 32, long side <= 1333), the other half resized to a
  short side of 400/500/600, cropped to 384..600 px per side, then resized like the first half.

Batches are formed as mmdet's ``AspectRatioBatchSampler`` does: portrait and landscape images fill separate
batches.
"""
from typing import List

import numpy as np

# (width / height, share of the images); the rest is log-uniform over [0.5, 2]
ASPECT_PEAKS = ((4 / 3, 0.47), (3 / 4, 0.20), (3 / 2, 0.11), (2 / 3, 0.04), (16 / 9, 0.05), (1.0, 0.05))
LONG_SIDE = 640
SINGLE_SCALE = (1333, 800)
MS_SHORT_SIDES = tuple(range(480, 801, 32))
CROP_SHORT_SIDES = (400, 500, 600)
CROP_RANGE = (384, 600)
PIPELINES = ('single-scale', 'ms-crop')


def original_sizes(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 2) int array of COCO-like original image sizes (height, width)."""
    peaks = np.array([a for a, _ in ASPECT_PEAKS])
    shares = np.array([s for _, s in ASPECT_PEAKS])
    pick = rng.choice(len(peaks) + 1, size=n, p=np.append(shares, 1 - shares.sum()))
    aspect = np.where(pick < len(peaks), peaks[np.minimum(pick, len(peaks) - 1)],
                      np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=n)))
    width = np.where(aspect >= 1, LONG_SIDE, np.round(LONG_SIDE * aspect))
    height = np.where(aspect >= 1, np.round(LONG_SIDE / aspect), LONG_SIDE)
    return np.stack([height, width], axis=1).astype(int)


def keep_ratio_resize(height: int, width: int, long_max: int, short_max: int):
    """The size mmcv's keep-ratio ``Resize(scale=(long_max, short_max))`` gives an image (rounded as mmcv)."""
    factor = min(long_max / max(height, width), short_max / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def _ms_crop(rng: np.random.Generator, height: int, width: int):
    if rng.random() < 0.5:
        height, width = keep_ratio_resize(height, width, 1333, int(rng.choice(CROP_SHORT_SIDES)))
        height = int(rng.integers(CROP_RANGE[0], min(height, CROP_RANGE[1]) + 1)) if height > CROP_RANGE[0] else height
        width = int(rng.integers(CROP_RANGE[0], min(width, CROP_RANGE[1]) + 1)) if width > CROP_RANGE[0] else width
    return keep_ratio_resize(height, width, 1333, int(rng.choice(MS_SHORT_SIDES)))


def size_stream(num_batches: int, batch: int = 2, pipeline: str = 'single-scale', seed: int = 0) -> List[np.ndarray]:
    """``num_batches`` arrays of shape (batch, 2): the (height, width) of each image after the pipeline."""
    if pipeline not in PIPELINES:
        raise ValueError(f'pipeline must be one of {PIPELINES}, got {pipeline!r}')
    rng = np.random.default_rng(seed)
    groups = {True: [], False: []}
    batches = []
    while len(batches) < num_batches:
        for height, width in original_sizes(rng, 4 * batch):
            if pipeline == 'single-scale':
                size = keep_ratio_resize(height, width, *SINGLE_SCALE)
            else:
                size = _ms_crop(rng, height, width)
            group = groups[bool(width < height)]
            group.append(size)
            if len(group) == batch:
                batches.append(np.array(group))
                group.clear()
                if len(batches) == num_batches:
                    break
    return batches
