"""The fast-loss decode heads and their matrix-product bilinear resize, against mmseg's heads and F.interpolate."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.models.losses import accuracy
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import mlla_dense  # noqa: F401  (registers the heads)
from mlla_dense.models.decode_heads.fast_loss import top1_accuracy
from mlla_dense.models.layers.bilinear_resize import bilinear_resize

RESIZES = [((2, 3, 16, 16), (64, 64)), ((2, 3, 7, 11), (30, 17)), ((1, 2, 9, 5), (4, 3)), ((1, 1, 1, 6), (5, 6)),
           ((2, 4, 13, 13), (13, 40))]


@pytest.mark.parametrize('shape,size', RESIZES)
@pytest.mark.parametrize('align_corners', [False, True])
def test_resize_equals_interpolate_in_float64(shape, size, align_corners):
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    ours = bilinear_resize(x, size, align_corners)
    theirs = F.interpolate(x, size, mode='bilinear', align_corners=align_corners)
    grad_out = torch.randn_like(theirs)
    ours_grad, = torch.autograd.grad(ours, x, grad_out)
    theirs_grad, = torch.autograd.grad(theirs, x, grad_out)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-12, atol=1e-12)


def test_resize_under_autocast_computes_in_the_autocast_dtype():
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = bilinear_resize(x, (32, 32))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), F.interpolate(x, (32, 32), mode='bilinear'), rtol=2e-2, atol=2e-2)


def test_resize_rejects_other_ranks():
    with pytest.raises(ValueError, match=r'\(B, C, h, w\)'):
        bilinear_resize(torch.randn(3, 8, 8), (16, 16))


def test_top1_accuracy_equals_mmseg_accuracy():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 12, 12, generator=gen)
    labels = torch.randint(0, 5, (2, 12, 12), generator=gen)
    labels[0, :3] = 255
    labels[1, 5] = logits[1].argmax(0)[5]  # some right answers
    torch.testing.assert_close(top1_accuracy(logits, labels, 255), accuracy(logits, labels, ignore_index=255))


def samples(batch, size, classes, gen):
    out = []
    for _ in range(batch):
        label = torch.randint(0, classes, (1, *size), generator=gen)
        label[0, :2] = 255
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo(dict(img_shape=size, pad_shape=size))
        out.append(sample)
    return out


HEADS = [
    ('UPerHead', dict(in_channels=[8, 16, 32, 64], in_index=[0, 1, 2, 3], pool_scales=(1, 2), channels=16,
                      num_classes=5, align_corners=False)),
    ('FCNHead', dict(in_channels=32, in_index=2, channels=16, num_convs=1, concat_input=False, num_classes=5,
                     align_corners=False,
                     loss_decode=[dict(type='CrossEntropyLoss', loss_weight=0.4, loss_name='loss_ce'),
                                  dict(type='DiceLoss', loss_weight=0.1, loss_name='loss_dice')])),
]


@pytest.mark.parametrize('kind,cfg', HEADS)
def test_head_loss_and_gradients_equal_mmseg(kind, cfg):
    """Same weights, same features and labels: the losses, accuracy and every parameter gradient match mmseg's."""
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):  # other tests may leave mmdet's scope current
        theirs = MODELS.build(dict(type=kind, **cfg)).double()
        ours = MODELS.build(dict(type=f'{kind}FastLoss', **cfg)).double()
    ours.load_state_dict(theirs.state_dict())
    gen = torch.Generator().manual_seed(1)
    feats = [torch.randn(2, c, 64 // s, 64 // s, generator=gen, dtype=torch.float64)
             for c, s in zip([8, 16, 32, 64], [4, 8, 16, 32])]
    data = samples(2, (64, 64), 5, gen)
    results = []
    for head in (theirs, ours):
        head.train()
        torch.manual_seed(2)  # dropout
        losses = head.loss(feats, data, train_cfg=dict())
        total = sum(v for k, v in losses.items() if k.startswith('loss'))
        grads = torch.autograd.grad(total, list(head.parameters()), allow_unused=True)
        results.append((losses, grads))
    (their_losses, their_grads), (our_losses, our_grads) = results
    assert set(our_losses) == set(their_losses)
    for key in their_losses:
        torch.testing.assert_close(our_losses[key], their_losses[key], rtol=1e-9, atol=1e-9)
    for ours_g, theirs_g in zip(our_grads, their_grads):
        assert (ours_g is None) == (theirs_g is None)
        if ours_g is not None:
            torch.testing.assert_close(ours_g, theirs_g, rtol=1e-9, atol=1e-12)
