"""BucketedDetDataPreprocessor: training batches padded to the smallest bucket that holds them, at the bottom and
right, with batch_input_shape and the ground-truth masks following and the boxes untouched; evaluation batches
and batches larger than every bucket padded as mmdet pads them."""
import numpy as np
import pytest
import torch
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

from mlla_dense.models.data_preprocessors import BucketedDetDataPreprocessor, bucket_shape

NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32,
            pad_mask=True)


def test_bucket_shape():
    buckets = [(128, 160), (96, 224), (192, 192)]
    assert bucket_shape(96, 128, buckets, 32) == (128, 160)  # the smallest area that holds it (not (96, 224))
    assert bucket_shape(96, 200, buckets, 32) == (96, 224)
    assert bucket_shape(160, 96, buckets, 32) == (192, 192)
    assert bucket_shape(224, 96, buckets, 64) == (256, 128)  # larger than every bucket: the divisor
    assert bucket_shape(100, 130, (), 128) == (128, 256)


def batch(sizes, seed=0):
    rng = np.random.default_rng(seed)
    inputs, samples = [], []
    for height, width in sizes:
        inputs.append(torch.from_numpy(rng.integers(0, 256, (3, height, width), dtype=np.uint8)))
        sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width)))
        masks = rng.integers(0, 2, (2, height, width), dtype=np.uint8)
        sample.gt_instances = InstanceData(bboxes=torch.tensor([[1., 2., 30., 40.], [5., 6., 50., 60.]]),
                                           labels=torch.tensor([0, 1]), masks=BitmapMasks(masks, height, width))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def test_training_batch_goes_to_its_bucket():
    sizes = [(70, 100), (60, 90)]  # mmdet pads this batch to 96x128
    plain = DetDataPreprocessor(**NORM)(batch(sizes), training=True)
    bucketed = MODELS.build(dict(type='BucketedDetDataPreprocessor', buckets=[(128, 160), (256, 256)], **NORM))
    out = bucketed(batch(sizes), training=True)
    assert isinstance(bucketed, BucketedDetDataPreprocessor)
    assert plain['inputs'].shape == (2, 3, 96, 128) and out['inputs'].shape == (2, 3, 128, 160)
    assert torch.equal(out['inputs'][..., :96, :128], plain['inputs'])
    assert (out['inputs'][..., 96:, :] == 0).all() and (out['inputs'][..., 128:] == 0).all()
    for got, ref, (height, width) in zip(out['data_samples'], plain['data_samples'], sizes):
        assert got.batch_input_shape == (128, 160)
        assert got.pad_shape == ref.pad_shape and got.img_shape == (height, width)
        assert torch.equal(got.gt_instances.bboxes, ref.gt_instances.bboxes)
        masks = got.gt_instances.masks
        assert (masks.height, masks.width) == (128, 160)
        assert np.array_equal(masks.masks[:, :96, :128], ref.gt_instances.masks.masks)
        assert not masks.masks[:, 96:].any() and not masks.masks[:, :, 128:].any()


def test_evaluation_and_oversized_batches_pad_as_mmdet():
    sizes = [(70, 100), (60, 90)]
    bucketed = BucketedDetDataPreprocessor(buckets=[(128, 160)], bucket_divisor=64, **NORM)
    plain = DetDataPreprocessor(**NORM)
    assert torch.equal(bucketed(batch(sizes))['inputs'], plain(batch(sizes))['inputs'])  # training=False
    out = bucketed(batch([(200, 100), (60, 90)]), training=True)
    assert out['inputs'].shape == (2, 3, 256, 128)  # past every bucket: multiples of bucket_divisor
    assert out['data_samples'][0].batch_input_shape == (256, 128)
    no_buckets = BucketedDetDataPreprocessor(**NORM)(batch(sizes), training=True)
    assert torch.equal(no_buckets['inputs'], plain(batch(sizes), training=True)['inputs'])


@pytest.mark.parametrize('kwargs,match', [(dict(buckets=[(100, 128)]), 'multiples of pad_size_divisor'),
                                          (dict(bucket_divisor=48), 'multiple of pad_size_divisor')])
def test_bad_buckets_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BucketedDetDataPreprocessor(**kwargs, **NORM)
