"""Float32RoIExtractor: bfloat16 features pool like float32 ones, where mmdet's SingleRoIExtractor fails."""
import pytest
import torch
from mmdet.registry import MODELS

import mlla_dense  # noqa: F401  (registers Float32RoIExtractor)

STRIDES = [4, 8, 16, 32]


def extractor(kind):
    return MODELS.build(dict(type=kind, roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
                             out_channels=8, featmap_strides=STRIDES))


def features_and_rois(dtype):
    gen = torch.Generator().manual_seed(0)
    feats = tuple(torch.randn(2, 8, 64 // s, 96 // s, generator=gen).to(dtype).requires_grad_() for s in STRIDES)
    xy = torch.rand(6, 2, generator=gen) * torch.tensor([60.0, 40.0])
    wh = torch.rand(6, 2, generator=gen) * 30 + 2
    rois = torch.cat([torch.tensor([0, 0, 1, 1, 0, 1.0])[:, None], xy, xy + wh], dim=1)
    return feats, rois


def test_bfloat16_features_pool_as_float32():
    feats, rois = features_and_rois(torch.bfloat16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = extractor('Float32RoIExtractor')(feats, rois)
    out.sum().backward()
    exact = [f.detach().float().requires_grad_() for f in feats]
    expected = extractor('SingleRoIExtractor')(exact, rois)
    expected.sum().backward()
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    for f, e in zip(feats, exact):
        assert f.grad.dtype == torch.bfloat16
        torch.testing.assert_close(f.grad.float(), e.grad, rtol=1e-2, atol=1e-2)


def test_mmdet_extractor_fails_on_bfloat16():
    """The reason the class exists: if mmcv gains bfloat16 RoIAlign, this fails and the class can go."""
    feats, rois = features_and_rois(torch.bfloat16)
    with pytest.raises(RuntimeError):
        extractor('SingleRoIExtractor')(feats, rois)


def test_float32_features_unchanged():
    feats, rois = features_and_rois(torch.float32)
    torch.testing.assert_close(extractor('Float32RoIExtractor')(feats, rois),
                               extractor('SingleRoIExtractor')(feats, rois), rtol=0, atol=0)
