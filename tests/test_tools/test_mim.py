"""`mim train` / `mim test` (OpenMMLab's launcher, running mmdet's and mmseg's own scripts) on our configs,
and tools/train.py + tools/test.py: 2 iterations on a tiny generated dataset, on the CPU."""
import glob
import os.path as osp

import pytest

from helpers import DET_DEMO, SEG_DEMO, data_options, make_tiny_shapes, run

DET_OPTS = ['train_cfg.max_epochs=1', 'train_dataloader.batch_size=8', 'default_hooks.logger.interval=1']
SEG_OPTS = ['train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
            'default_hooks.logger.interval=1']


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_tiny_shapes(tmp_path_factory.mktemp('mim') / 'shapes', num_train=16, num_val=4)


def mim(*args):
    return run(['python', '-m', 'mim', *args])


def test_mim_train_and_test_mmdet(shapes, tmp_path):
    opts = data_options(shapes, 'mmdet') + DET_OPTS
    trained = mim('train', 'mmdet', DET_DEMO, '--work-dir', str(tmp_path), '--cfg-options', *opts)
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-4000:]
    log = trained.stdout + trained.stderr
    assert 'Epoch(train) [1][2/2]' in log
    checkpoint = osp.join(str(tmp_path), 'epoch_1.pth')
    assert osp.exists(checkpoint)
    tested = mim('test', 'mmdet', DET_DEMO, '--checkpoint', checkpoint, '--work-dir', str(tmp_path / 'test'),
                 '--cfg-options', *data_options(shapes, 'mmdet'))
    assert tested.returncode == 0, (tested.stdout + tested.stderr)[-4000:]
    assert 'coco/bbox_mAP' in tested.stdout + tested.stderr


def test_mim_train_mmsegmentation(shapes, tmp_path):
    opts = data_options(shapes, 'mmseg') + SEG_OPTS
    trained = mim('train', 'mmsegmentation', SEG_DEMO, '--work-dir', str(tmp_path), '--cfg-options', *opts)
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-4000:]
    assert 'Iter(train) [2/2]' in trained.stdout + trained.stderr
    assert 'mIoU' in trained.stdout + trained.stderr


@pytest.mark.parametrize('config,opts,scope', [(DET_DEMO, DET_OPTS, 'mmdet'), (SEG_DEMO, SEG_OPTS, 'mmseg')],
                         ids=['det', 'seg'])
def test_tools_train_then_test(shapes, tmp_path, config, opts, scope):
    trained = run(['python', 'tools/train.py', config, '--work-dir', str(tmp_path),
                   '--cfg-options', *data_options(shapes, scope), *opts])
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-4000:]
    checkpoint = sorted(glob.glob(osp.join(str(tmp_path), '*.pth')))[-1]
    tested = run(['python', 'tools/test.py', config, checkpoint, '--work-dir', str(tmp_path / 'test'),
                  '--show-dir', str(tmp_path / 'vis'), '--cfg-options', *data_options(shapes, scope)])
    assert tested.returncode == 0, (tested.stdout + tested.stderr)[-4000:]
    assert ('coco/segm_mAP' if scope == 'mmdet' else 'mIoU') in tested.stdout + tested.stderr
    drawn = [p for p in glob.glob(str(tmp_path / 'vis' / '**' / '*'), recursive=True) if p.endswith(('.png', '.jpg'))]
    assert drawn, 'tools/test.py --show-dir drew nothing'
    augmented = run(['python', 'tools/test.py', config, checkpoint, '--tta', '--work-dir', str(tmp_path / 'tta'),
                     '--cfg-options', *data_options(shapes, scope)])
    if scope == 'mmseg':  # the UperNet demo config has flips as its test-time augmentation
        assert augmented.returncode == 0, (augmented.stdout + augmented.stderr)[-4000:]
        assert 'mIoU' in augmented.stdout + augmented.stderr and 'SegTTAModel' in augmented.stdout + augmented.stderr
    else:  # the detector's has none: a clear message, no traceback
        assert augmented.returncode != 0
        assert '--tta needs tta_model and tta_pipeline in the config' in augmented.stderr
        assert 'Traceback' not in augmented.stderr
