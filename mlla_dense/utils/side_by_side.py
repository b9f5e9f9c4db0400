"""Pictures a person can read: ground truth and prediction side by side, upscaled and labelled.

The demo's images are ~120 px wide; drawn as they are, masks and labels are unreadable. Here every panel is
enlarged by an integer factor with nearest-neighbour interpolation (pixels stay sharp, so mask edges are the
model's, not a smoothing's), masks and boxes are drawn at that size, and each panel gets a title.
All images are BGR uint8 (OpenCV order); palettes are RGB, as in the OpenMMLab dataset metainfo.
"""
import math
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
TITLE_HEIGHT = 28
GAP = 8


def upscale_factor(shape: Tuple[int, ...], min_side: int = 384) -> int:
    """The smallest integer factor that makes the shorter side of an image of ``shape`` at least ``min_side``."""
    return max(1, math.ceil(min_side / min(shape[:2])))


def enlarge(array: np.ndarray, factor: int) -> np.ndarray:
    """``array`` (an image or a label map) ``factor`` times larger, by nearest neighbour."""
    return cv2.resize(array, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)


def _bgr(rgb: Sequence[int]) -> Tuple[int, int, int]:
    return int(rgb[2]), int(rgb[1]), int(rgb[0])


def _label(canvas: np.ndarray, text: str, x: int, y: int, colour: Tuple[int, int, int]) -> None:
    """``text`` on a filled box of ``colour`` whose top-left corner is (x, y), kept inside the canvas."""
    (tw, th), base = cv2.getTextSize(text, FONT, 0.5, 1)
    x = int(min(max(x, 0), canvas.shape[1] - tw - 4))
    y = int(min(max(y, 0), canvas.shape[0] - th - base - 4))
    cv2.rectangle(canvas, (x, y), (x + tw + 4, y + th + base + 4), colour, -1)
    ink = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
    cv2.putText(canvas, text, (x + 2, y + th + 2), FONT, 0.5, ink, 1, cv2.LINE_AA)


def _overlay(canvas: np.ndarray, mask: np.ndarray, colour: Tuple[int, int, int], alpha: float = 0.5) -> None:
    """Tint the pixels of ``mask`` with ``colour`` and outline them."""
    canvas[mask] = (canvas[mask] * (1 - alpha) + np.array(colour) * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, colour, 2)


def draw_instances(image: np.ndarray, factor: int, masks: Sequence[np.ndarray], labels: Sequence[int],
                   boxes: Sequence[Sequence[float]], classes: Sequence[str], palette: Sequence[Sequence[int]],
                   scores: Optional[Sequence[float]] = None) -> np.ndarray:
    """``image`` enlarged ``factor`` times with each instance's mask, box (x0, y0, x1, y1 in image pixels) and
    class name (and score) drawn on it; ``labels`` index ``classes`` and ``palette``."""
    canvas = enlarge(image, factor)
    for k, (mask, label, box) in enumerate(zip(masks, labels, boxes)):
        colour = _bgr(palette[label])
        _overlay(canvas, enlarge(mask.astype(np.uint8), factor).astype(bool), colour)
        x0, y0, x1, y1 = (int(round(v * factor)) for v in box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, 2)
        text = classes[label] if scores is None else f'{classes[label]} {scores[k]:.2f}'
        _label(canvas, text, x0, y0 - 22 if y0 >= 22 else y0 + 2, colour)
    return canvas


def draw_semantic(image: np.ndarray, factor: int, label_map: np.ndarray, palette: Sequence[Sequence[int]],
                  ignore: Sequence[int] = (0,)) -> np.ndarray:
    """``image`` enlarged ``factor`` times with each class of ``label_map`` (H x W class indices) tinted in its
    palette colour; classes in ``ignore`` (the background) stay as they are."""
    canvas = enlarge(image, factor)
    big = enlarge(label_map.astype(np.uint8), factor)
    for label in np.unique(big):
        if label not in ignore and label < len(palette):
            _overlay(canvas, big == label, _bgr(palette[label]), alpha=0.6)
    return canvas


def titled(panel: np.ndarray, title: str) -> np.ndarray:
    """``panel`` below a white band holding ``title``."""
    band = np.full((TITLE_HEIGHT, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(band, title, (6, TITLE_HEIGHT - 9), FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, panel])


def legend(classes: Sequence[str], palette: Sequence[Sequence[int]], width: int) -> np.ndarray:
    """A white strip of width ``width`` naming each class on its colour."""
    strip = np.full((TITLE_HEIGHT, width, 3), 255, np.uint8)
    x = 6
    for name, rgb in zip(classes, palette):
        _label(strip, name, x, 4, _bgr(rgb))
        x += cv2.getTextSize(name, FONT, 0.5, 1)[0][0] + 14
    return strip


def grid(rows: List[List[np.ndarray]]) -> np.ndarray:
    """Panels laid out row by row on a white canvas, GAP pixels apart (rows may differ in length)."""
    heights = [max(p.shape[0] for p in row) for row in rows]
    width = max(sum(p.shape[1] for p in row) + GAP * (len(row) - 1) for row in rows)
    canvas = np.full((sum(heights) + GAP * (len(rows) - 1), width, 3), 255, np.uint8)
    y = 0
    for row, height in zip(rows, heights):
        x = 0
        for panel in row:
            canvas[y:y + panel.shape[0], x:x + panel.shape[1]] = panel
            x += panel.shape[1] + GAP
        y += height + GAP
    return canvas
