"""fp16 autocast on CPU (the part of the fp16 path a CPU can run: mmcv's CPU nms/roi_align have no half
kernels, so whole detectors train in fp16 on the GPU, see tools/benchmark_train_step.py). Both backbones,
with the reference and the Triton (interpreter) backends: finite outputs close to fp32, and a loss-scaled
backward with finite gradients."""
import pytest
import torch

from mlla_dense.models.backbones.mlla import MLLA
from mlla_dense.models.backbones.vmamba import VMamba

BACKBONES = {'mlla': lambda: MLLA(arch='nano', drop_path_rate=0.0),
             'vmamba': lambda: VMamba(dims=16, depths=(1, 1, 1, 1), ssm_ratio=2.0, drop_path_rate=0.0)}


@pytest.mark.parametrize('backend', ['torch', 'triton'])
@pytest.mark.parametrize('name', list(BACKBONES))
def test_fp16_autocast_matches_fp32(name, backend, use_backend):
    use_backend(backend)
    torch.manual_seed(0)
    model = BACKBONES[name]().train()
    image = torch.randn(1, 3, 32, 40)
    with torch.no_grad():
        reference = model(image)
    with torch.autocast('cpu', dtype=torch.float16):
        outs = model(image)
    for out, ref in zip(outs, reference):
        assert torch.isfinite(out).all()
        assert ((out.float() - ref).norm() / ref.norm()).item() < 1e-2
    scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** 16)
    scaler.scale(sum(out.float().square().mean() for out in outs)).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) == sum(1 for p in model.parameters() if p.requires_grad)
    assert all(torch.isfinite(g).all() for g in grads)
    assert scaler.get_scale() == 2.0 ** 16  # nothing overflowed, so the scale was kept
