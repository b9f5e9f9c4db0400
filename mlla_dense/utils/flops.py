"""Parameters and FLOPs of a detector or segmentor config at a given input size.

Counting follows fvcore / mmengine's FlopAnalyzer, the convention of the MLLA, Swin and VMamba papers: one
multiply-add is one FLOP; convolutions, linear layers and matrix products (including the linear-attention
matmuls, traced through the PyTorch reference) are counted, as are norms and upsampling, while elementwise
operations are not. Two-stage detectors are counted like mmdet's ``forward_dummy``: the RPN on the whole
image, the box head on 1000 proposals and the mask head on 100 of them. Segmentors count the backbone and
the decode head (no auxiliary head, no test-time sliding). VMamba's selective scan is not a matrix product:
it is counted as the official VMamba counter does, 9 * B * L * D * N + B * D * L per scan (the scan itself
is replaced by a cheap stand-in while tracing, which would otherwise unroll L steps).
"""
import contextlib

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.structures import InstanceData
from torch import nn

from mlla_dense.kernels.backend import forced_backend


class _DetectorDummy(nn.Module):
    """Backbone, neck, RPN head and RoI head on fixed random proposals (mmdet's forward_dummy)."""

    def __init__(self, detector, height, width, num_proposals=1000):
        super().__init__()
        self.detector = detector
        gen = torch.Generator().manual_seed(0)
        xy = torch.rand(num_proposals, 2, generator=gen) * torch.tensor([width, height]) * 0.8
        wh = torch.rand(num_proposals, 2, generator=gen) * torch.tensor([width, height]) * 0.2 + 8
        self.register_buffer('proposals', torch.cat([xy, xy + wh], 1))

    def forward(self, inputs):
        from mmdet.structures import DetDataSample
        x = self.detector.extract_feat(inputs)
        outs = [self.detector.rpn_head(x)] if getattr(self.detector, 'with_rpn', False) else []
        sample = DetDataSample(metainfo=dict(img_shape=tuple(inputs.shape[-2:]), scale_factor=(1., 1.)))
        proposals = InstanceData(bboxes=self.proposals)
        outs.append(self.detector.roi_head.forward(x, [proposals], [sample]))
        return outs


class _SegmentorDummy(nn.Module):
    def __init__(self, segmentor):
        super().__init__()
        self.segmentor = segmentor

    def forward(self, inputs):
        return self.segmentor.decode_head(self.segmentor.extract_feat(inputs))


@contextlib.contextmanager
def _counted_selective_scan(counter: list):
    """Replace the reference selective scan by ``u * D`` (same shape, not counted) and add its FLOPs."""
    import mlla_dense.kernels.selective_scan.reference as scan_module
    original = scan_module.selective_scan_reference

    def stand_in(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
        batch, kd, length = u.shape
        counter.append(9 * batch * length * kd * A.shape[1] + (batch * kd * length if D is not None else 0))
        return u.float() * (D.float()[:, None] if D is not None else 1.0)

    scan_module.selective_scan_reference = stand_in
    try:
        yield
    finally:
        scan_module.selective_scan_reference = original


def _build(cfg: dict, scope: str):
    """``cfg`` built in ``scope``'s registry, in eval mode, without loading a checkpoint."""
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    from mmengine.registry import init_default_scope
    init_default_scope(scope)
    return registry.build(cfg).eval()


def _flops(module: nn.Module, height: int, width: int) -> int:
    """FLOPs of ``module`` on one (3, height, width) image, selective scans included; the reference math is
    traced, not opaque kernels."""
    scans = []
    with torch.no_grad(), forced_backend('torch'), _counted_selective_scan(scans):
        analyzer = FlopAnalyzer(module, (torch.randn(1, 3, height, width),))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(analyzer.total()) + sum(scans)


def model_complexity(cfg, height: int, width: int) -> dict:
    """{'params': int, 'flops': int, 'scope': str} of ``cfg.model`` for one (3, height, width) image."""
    scope = cfg.get('default_scope', 'mmdet')
    model_cfg = cfg.model.copy()
    if 'backbone' in model_cfg:
        model_cfg['backbone'] = dict(model_cfg['backbone'], init_cfg=None)
    model = _build(model_cfg, scope)
    wrapped = _DetectorDummy(model, height, width) if hasattr(model, 'roi_head') else _SegmentorDummy(model)
    return dict(params=int(parameter_count(model)['']), flops=_flops(wrapped, height, width), scope=scope)


def backbone_complexity(backbone_cfg: dict, height: int, width: int, scope: str = 'mmdet') -> dict:
    """{'params': int, 'flops': int} of a backbone alone for one (3, height, width) image (the classification
    papers' columns, classifier head aside)."""
    backbone = _build(dict(backbone_cfg, init_cfg=None), scope)
    return dict(params=int(parameter_count(backbone)['']), flops=_flops(backbone, height, width))
