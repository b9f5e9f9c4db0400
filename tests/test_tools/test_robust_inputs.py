"""Bad and odd inputs: image_demo skips unreadable images and draws the others, check_dataset.py reports a
broken dataset, and train.py refuses one before training (unless --skip-dataset-check)."""
import glob
import json
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest

from helpers import DET_DEMO, SEG_DEMO, data_options, make_tiny_shapes, run
from mlla_dense.utils.image_files import ImageFileError, decode_image, read_header


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_tiny_shapes(tmp_path_factory.mktemp('shapes') / 'data', num_train=4, num_val=2)


def plant_images(folder, shapes):
    """Good, odd-but-valid and unreadable images; returns (names expected drawn, {bad name: reason words})."""
    good = cv2.imread(osp.join(shapes, 'images/val/val_000000.jpg'))
    shutil.copy(osp.join(shapes, 'images/val/val_000000.jpg'), folder / 'good.jpg')
    cv2.imwrite(str(folder / 'good.png'), good)  # same stem as good.jpg: both must be kept
    cv2.imwrite(str(folder / 'grey.png'), cv2.cvtColor(good, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / 'alpha.png'), cv2.cvtColor(good, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / 'deep.png'), good.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / 'deep_grey.png'), cv2.cvtColor(good, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)
    cv2.imwrite(str(folder / 'thin.png'), cv2.resize(good, (300, 8)))
    cv2.imwrite(str(folder / 'tiny.png'), good[:3, :3])
    cv2.imwrite(str(folder / 'huge.png'), cv2.resize(good, (1000, 1000)))
    (folder / 'empty.jpg').write_bytes(b'')
    data = (folder / 'good.jpg').read_bytes()
    (folder / 'truncated.jpg').write_bytes(data[:len(data) // 2])
    (folder / 'text.jpg').write_text('this is not a picture\n')
    (folder / 'notes.txt').write_text('ignored: no image extension\n')
    drawn = ['good.jpg.png', 'good.png.png', 'grey.png', 'alpha.png', 'deep.png', 'deep_grey.png', 'thin.png']
    bad = {'empty.jpg': 'empty file', 'truncated.jpg': 'truncated', 'text.jpg': 'not an image',
           'tiny.png': 'too small', 'huge.png': 'too large'}
    return drawn, bad


def test_image_reading_normalizes_odd_images(tmp_path, shapes):
    drawn, bad = plant_images(tmp_path, shapes)
    good = cv2.imread(str(tmp_path / 'good.png'))
    grey = cv2.cvtColor(good, cv2.COLOR_BGR2GRAY)
    for name, expected in [('grey.png', grey), ('alpha.png', good), ('deep.png', good), ('deep_grey.png', grey)]:
        pixels = decode_image(str(tmp_path / name))
        assert pixels.dtype == np.uint8 and pixels.shape == good.shape
        assert np.array_equal(pixels, np.dstack([expected] * 3) if expected.ndim == 2 else expected), name
    assert read_header(str(tmp_path / 'deep_grey.png')).mode.startswith('I')
    for name, words in bad.items():
        if words.startswith('too'):
            continue  # size limits are the demo's, not the reader's
        with pytest.raises(ImageFileError, match=words):
            decode_image(str(tmp_path / name))


def test_a_model_failure_costs_only_its_image(tmp_path, shapes):
    """draw_each with an inferencer that fails on one image: that image is named with the error, the next is
    drawn."""
    from mlla_dense.utils.inference import draw_each
    images = [str(tmp_path / f'{name}.jpg') for name in ('a', 'b', 'c')]
    for image in images:
        shutil.copy(osp.join(shapes, 'images/val/val_000000.jpg'), image)

    def inferencer(inputs, return_vis, **kwargs):
        if inputs[0].endswith('b.jpg'):
            raise RuntimeError('boom')
        return {'visualization': [np.zeros((4, 5, 3), np.uint8)]}

    lines = []
    result = draw_each(inferencer, images, str(tmp_path / 'out'), log=lines.append)
    assert [osp.basename(p) for p in result.written] == ['a.png', 'c.png']
    assert [image for image, _ in result.failed] == [images[1]] and 'RuntimeError: boom' in result.failed[0][1]
    assert len(lines) == 3 and 'b.jpg: skipped' in lines[1]


def test_image_demo_skips_bad_images_and_draws_the_others(tmp_path, shapes):
    images = tmp_path / 'images'
    images.mkdir()
    drawn, bad = plant_images(images, shapes)
    out = tmp_path / 'out'
    result = run(['python', 'tools/image_demo.py', str(images), DET_DEMO, '--out-dir', str(out),
                  '--device', 'cpu', '--max-pixels', '500000'])
    assert result.returncode == len(bad), result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(osp.basename(p) for p in glob.glob(str(out / 'vis/*.png'))) == sorted(drawn)
    skipped = [line for line in result.stdout.splitlines() if line.startswith('[') and 'skipped:' in line]
    for name, words in bad.items():
        assert any(name in line and words in line for line in skipped), (name, skipped)
    assert len(skipped) == len(bad)
    assert f'wrote {len(drawn)} of {len(drawn) + len(bad)}' in result.stdout
    assert 'notes.txt' in result.stdout


def test_image_demo_segmentation_skips_bad_images(tmp_path, shapes):
    images = tmp_path / 'images'
    images.mkdir()
    shutil.copy(osp.join(shapes, 'images/val/val_000000.jpg'), images / 'a.jpg')
    shutil.copy(osp.join(shapes, 'images/val/val_000001.jpg'), images / 'c.jpg')
    (images / 'b.jpg').write_bytes(b'')
    result = run(['python', 'tools/image_demo.py', str(images), SEG_DEMO, '--out-dir', str(tmp_path / 'out'),
                  '--device', 'cpu'])
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(osp.basename(p) for p in glob.glob(str(tmp_path / 'out/vis/*.png'))) == ['a.png', 'c.png']


def break_coco(root):
    """An empty image file and a box outside its image in the train split; returns their names."""
    ann_path = osp.join(root, 'annotations/instances_train.json')
    with open(ann_path) as f:
        coco = json.load(f)
    open(osp.join(root, 'images/train', coco['images'][0]['file_name']), 'wb').close()
    ann = next(a for a in coco['annotations'] if a['image_id'] != coco['images'][0]['id'])
    ann['bbox'][1] = -50
    with open(ann_path, 'w') as f:
        json.dump(coco, f)
    return coco['images'][0]['file_name'], ann['id']


def test_check_dataset_reports_a_broken_dataset(tmp_path):
    root = make_tiny_shapes(tmp_path / 'data', num_train=4, num_val=2)
    image, ann_id = break_coco(root)
    broken = run(['python', 'tools/check_dataset.py', DET_DEMO, '--cfg-options'] + data_options(root, 'mmdet'))
    assert broken.returncode == 1, broken.stdout + broken.stderr[-2000:]
    assert f'{image}: image: empty file' in broken.stdout
    assert f'annotation {ann_id} ' in broken.stdout and 'outside' in broken.stdout
    assert '2 problems' in broken.stdout


def test_train_refuses_a_broken_dataset_unless_told_to_skip_the_check(tmp_path):
    root = make_tiny_shapes(tmp_path / 'data', num_train=2, num_val=1)
    seg_map = sorted(glob.glob(osp.join(root, 'semantic/train/*.png')))[0]
    cv2.imwrite(seg_map, cv2.imread(seg_map, cv2.IMREAD_UNCHANGED)[:-2])  # resized away by the pipeline
    args = ['python', 'tools/train.py', SEG_DEMO, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
            'train_cfg.max_iters=1', 'train_cfg.val_interval=1000', 'train_dataloader.batch_size=2',
            'val_dataloader.batch_size=1'] + data_options(root, 'mmseg')
    refused = run(args)
    assert refused.returncode != 0
    assert osp.basename(seg_map) in refused.stderr and 'the label map is' in refused.stderr
    assert '--skip-dataset-check' in refused.stderr and not glob.glob(str(tmp_path / 'work/*.pth'))
    trained = run(args + ['--skip-dataset-check'])
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert glob.glob(str(tmp_path / 'work/iter_1.pth'))
