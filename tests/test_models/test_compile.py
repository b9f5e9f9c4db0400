"""Both backbones trace into one torch.compile graph with the Triton kernels (custom ops), in training mode
with gradients, so ``torch.compile(model)`` never falls back to eager in the middle of a backbone."""
import pytest
import torch

from mlla_dense.models.backbones.mlla import MLLA
from mlla_dense.models.backbones.vmamba import VMamba

BACKBONES = {'mlla': lambda: MLLA(arch='nano', drop_path_rate=0.1),
             'vmamba': lambda: VMamba(dims=16, depths=(1, 1, 1, 1), ssm_ratio=2.0, drop_path_rate=0.1)}


@pytest.mark.parametrize('name', list(BACKBONES))
def test_backbone_is_one_graph(name, use_backend):
    use_backend('triton')
    model = BACKBONES[name]().train()
    image = torch.randn(1, 3, 40, 56)

    def loss(image):
        return sum(out.float().square().mean() for out in model(image))

    explanation = torch._dynamo.explain(loss)(image)
    assert explanation.graph_break_count == 0, [str(r.reason) for r in explanation.break_reasons]
    assert explanation.graph_count == 1
