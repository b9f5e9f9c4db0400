"""The demo's pictures: enlarged by an integer factor (nearest neighbour), masks tinted in their class colour
inside their outline only, panels titled and laid out without overlap."""
import numpy as np

from mlla_dense.utils import side_by_side as sbs

PALETTE = [(255, 0, 0), (0, 0, 255)]  # RGB


def test_upscale_factor_reaches_min_side():
    assert sbs.upscale_factor((96, 144, 3)) == 4 and sbs.upscale_factor((400, 500)) == 1
    assert sbs.upscale_factor((100, 100), min_side=384) * 100 >= 384


def test_instances_tint_only_their_pixels():
    image = np.full((20, 30, 3), 128, np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[5:15, 10:20] = True
    out = sbs.draw_instances(image, 4, [mask], [1], [(10, 5, 20, 15)], ['a', 'b'], PALETTE, scores=[0.9])
    assert out.shape == (80, 120, 3)
    centre = out[40, 60]                                  # inside the mask: tinted towards blue (BGR)
    assert centre[0] > 128 and centre[2] < 128
    assert (out[75:, :5] == 128).all()                    # far outside: unchanged


def test_semantic_leaves_background():
    image = np.zeros((10, 10, 3), np.uint8)
    labels = np.zeros((10, 10), np.uint8)
    labels[:5] = 1
    out = sbs.draw_semantic(image, 3, labels, [(0, 0, 0)] + PALETTE)
    assert out.shape == (30, 30, 3)
    assert (out[20:] == 0).all() and out[5, 15, 2] > 0     # class 1 (red) tinted, background untouched


def test_grid_and_titles():
    panel = np.zeros((40, 50, 3), np.uint8)
    titled = sbs.titled(panel, 'prediction')
    assert titled.shape == (40 + sbs.TITLE_HEIGHT, 50, 3)
    canvas = sbs.grid([[titled, titled, titled], [titled]])
    assert canvas.shape == (2 * titled.shape[0] + sbs.GAP, 3 * 50 + 2 * sbs.GAP, 3)
    assert (canvas[sbs.TITLE_HEIGHT:titled.shape[0], :50] == 0).all()
