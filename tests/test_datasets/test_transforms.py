"""RandomUnsharpMask (mlla_dense/datasets/transforms.py): flat images stay as they are, edges get a halo on both
sides, the image keeps its shape and dtype, and both the mmdet and the mmseg pipelines find the transform."""
import numpy as np

from mlla_dense.datasets.transforms import RandomUnsharpMask


def edge_image():
    img = np.full((32, 32, 3), 60, np.uint8)
    img[:, 16:] = 180
    return img


def test_sharpens_edges_only():
    out = RandomUnsharpMask(prob=1.0, sigma=(1.5, 1.5), amount=(2.0, 2.0))({'img': edge_image()})['img']
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert out[:, 15].mean() < 60 < 180 < out[:, 16].mean()  # the halo: darker and brighter bands at the edge
    assert (out[:, :8] == 60).all() and (out[:, 24:] == 180).all()  # far from the edge: unchanged
    flat = np.full((16, 16, 3), 100, np.uint8)
    for sigma in (0.8, 1.5, 3.0):  # blurs whose float32 sums come out a hair below 100 at 0.8 and 1.5
        sharpen = RandomUnsharpMask(prob=1.0, sigma=(sigma, sigma), amount=(5.0, 5.0))
        assert (sharpen({'img': flat.copy()})['img'] == flat).all(), sigma


def test_probability_zero_keeps_the_image():
    img = edge_image()
    assert (RandomUnsharpMask(prob=0.0)({'img': img.copy()})['img'] == img).all()


def test_registered_for_both_pipelines():
    from mmdet.registry import TRANSFORMS as DET_TRANSFORMS
    from mmseg.registry import TRANSFORMS as SEG_TRANSFORMS
    for registry in (DET_TRANSFORMS, SEG_TRANSFORMS):
        assert registry.get('RandomUnsharpMask') is RandomUnsharpMask
