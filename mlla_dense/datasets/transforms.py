"""Image augmentations of the shapes demo that mmcv, mmdet and mmseg lack."""
import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.builder import TRANSFORMS


@TRANSFORMS.register_module()
class RandomUnsharpMask(BaseTransform):
    """Sharpen the image with an unsharp mask (``img + amount * (img - blurred img)``) of random strength.

    Every edge gets a halo: a brighter band on its bright side and a darker band on its dark side, a few pixels
    wide, so that a region's colour next to its boundary differs from its inside. The generated shapes are flat
    colours with sharp edges; this teaches the models that a shape's rim may look unlike its inside and unlike
    the background (as in sharpened photographs). Registered in mmcv's registry, so that both the mmdet and the
    mmseg pipelines find it; only ``img`` changes.

    Args:
        prob (float): probability of sharpening an image.
        sigma (tuple[float, float]): range of the Gaussian blur's standard deviation, in pixels (the halo's width).
        amount (tuple[float, float]): range of the strength.
    """

    def __init__(self, prob=0.5, sigma=(0.8, 2.0), amount=(1.0, 3.0)):
        self.prob, self.sigma, self.amount = prob, sigma, amount

    def transform(self, results):
        if np.random.rand() >= self.prob:
            return results
        img = results['img'].astype(np.float32)
        blurred = cv2.GaussianBlur(img, (0, 0), np.random.uniform(*self.sigma))
        sharpened = img + np.random.uniform(*self.amount) * (img - blurred)
        results['img'] = np.clip(np.rint(sharpened), 0, 255).astype(results['img'].dtype)  # rounded, not truncated
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(prob={self.prob}, sigma={self.sigma}, amount={self.amount})'
