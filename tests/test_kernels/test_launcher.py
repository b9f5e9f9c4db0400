"""kernels/launcher.py: a Launch's meta-parameters are compile-time constants also where torch.compile traces an
op with dynamic shapes, so that sizes derived from the token count reach Triton as numbers, not symbols."""
import torch
import triton
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

from mlla_dense.kernels.launcher import Launch
from mlla_dense.kernels.layer_norm.backward import _layer_norm_bwd_kernel


def symbolic_tokens(mode, b, n, c):
    """A fake (b, n, c) tensor whose token count is a symbol (what dynamic shapes trace with)."""
    context = StatelessSymbolicContext(dynamic_sizes=[DimDynamic.STATIC, DimDynamic.DYNAMIC, DimDynamic.STATIC])
    return mode.from_tensor(torch.randn(b, n, c), symbolic_context=context)


def test_symbolic_meta_parameters_become_their_values():
    mode = FakeTensorMode(shape_env=ShapeEnv())
    n = symbolic_tokens(mode, 2, 3000, 64).shape[1]
    assert isinstance(n, torch.SymInt)
    launch = Launch(_layer_norm_bwd_kernel, (triton.cdiv(n, 32),), BLOCK_K=triton.next_power_of_2(n // 100),
                    RESIDUAL=False)
    assert launch.meta == {'BLOCK_K': 32, 'RESIDUAL': False}
    assert all(type(v) is not torch.SymInt for v in launch.meta.values())
    assert isinstance(launch.grid[0], torch.SymInt)  # grids stay symbolic: Inductor computes them at run time
