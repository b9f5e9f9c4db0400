"""The MLLA block as one autograd node (models/layers/mlla_block_function.py) against the block op by op
(MLLABlock.forward_ops, the specification), run on the PyTorch reference: output and the gradients of the input
and of all 24 parameters, with and without drop path, recomputation and autocast. In float32 the two agree to
rounding; in bfloat16 both are compared with a float64 truth (the fused block's float32 weight gradients are
more precise than autocast's, and sums over ~1e5 tokens that nearly cancel differ between any two bfloat16
computations).

CPU: the kernels through the Triton interpreter at small odd shapes; GPU (marker `gpu`): an MLLA-T stage-1 block
at 2x800x1344.
"""
import copy

import pytest
import torch

from helpers import FixedDropPath, rel_err
from mlla_dense.kernels.backend import forced_backend
from mlla_dense.models.backbones.mlla import MLLA, MLLABlock
from mlla_dense.models.backbones.pretrained_backbone import fused_block_masks
from mlla_dense.models.layers.mlla_block_function import PARAMETERS, block_parameters

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'


def make_block(c, heads, recompute, seed=0):
    torch.manual_seed(seed)
    block = MLLABlock(c, heads, drop_path=0.25, recompute=recompute).to(DEVICE)
    with torch.no_grad():
        for p in block.parameters():  # away from the zero biases and unit norms of the initialization
            p.add_(0.2 * torch.randn_like(p))
    return block


def run(fn, block, x, dtype):
    leaves = [x.detach().clone().requires_grad_()] + [p for p in block.parameters()]
    for p in block.parameters():
        p.grad = None
    with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=dtype == 'bf16'):
        out = fn(leaves[0])
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out)
    out.backward(grad)
    grads = {'x': leaves[0].grad}
    grads.update({name: p.grad for name, p in zip(PARAMETERS, block_parameters(block))})
    return out.detach(), grads


def op_by_op(block, keep, drop_prob, hw_shape):
    """The specification: forward_ops with mmcv's DropPath arithmetic on the given masks."""
    block = copy.copy(block)  # the same parameters and submodules, in a table of its own:
    block._modules = dict(block._modules)  # the drop path is replaced on this copy only
    block.drop_path = FixedDropPath(keep, drop_prob) if keep is not None else torch.nn.Identity()
    return lambda t: block.forward_ops(t, hw_shape)


def fused_and_reference(b, h, w, c, heads, dtype, recompute, drop_path, use_backend):
    """(fused, op-by-op, float64 truth) runs: each (output, gradients) on the same tokens, masks and gradient."""
    block = make_block(c, heads, recompute).train(drop_path)
    x = torch.randn(b, h * w, c, device=DEVICE).to(torch.bfloat16 if dtype == 'bf16' else torch.float32)
    keep = torch.tensor([[1., 0.], [0., 1.]], device=DEVICE)[:, :b] if drop_path else None
    use_backend('triton')
    fused = run(lambda t: block(t, (h, w), keep), block, x, dtype)
    use_backend('torch')
    reference = run(op_by_op(block, keep, 0.25, (h, w)), block, x, dtype)
    exact = copy.deepcopy(block).double()
    truth = run(op_by_op(exact, keep, 0.25, (h, w)), exact, x.double(), 'fp64')
    return fused, reference, truth


def errors(run_result, against):
    (out, grads), (ref_out, ref_grads) = run_result, against
    assert out.shape == ref_out.shape
    result = {'out': rel_err(out, ref_out)}
    result.update({name: rel_err(grads[name], ref) for name, ref in ref_grads.items()})
    return result


@pytest.mark.parametrize('recompute', [True, False])
@pytest.mark.parametrize('drop_path', [False, True])
def test_fp32_matches_op_by_op(recompute, drop_path, use_backend):
    fused, reference, _ = fused_and_reference(2, 5, 7, 32, 2, 'fp32', recompute, drop_path, use_backend)
    assert fused[0].dtype == reference[0].dtype == torch.float32
    found = errors(fused, reference)
    assert max(found.values()) < 2e-5, found


def check_bf16(shape, heads, use_backend, slack):
    """bfloat16 autocast on a bfloat16 token stream: every output and gradient of the fused block is as close to
    the float64 truth as the op-by-op block's (within ``slack``, relative L2)."""
    fused, reference, truth = fused_and_reference(*shape, heads, 'bf16', True, True, use_backend)
    assert fused[0].dtype == reference[0].dtype == torch.bfloat16
    ours, theirs = errors(fused, truth), errors(reference, truth)
    worse = {name: (ours[name], theirs[name]) for name in ours if ours[name] > 1.25 * theirs[name] + slack}
    assert not worse, worse


def test_bf16_autocast_as_accurate_as_op_by_op(use_backend):
    """The interpreter truncates to bfloat16 where GPUs round to nearest: a bias the GPU test does not have."""
    check_bf16((2, 4, 6, 32), 2, use_backend, slack=3e-2)


def test_without_gradients_is_the_same_forward(use_backend):
    block = make_block(32, 2, True).eval()
    x = torch.randn(1, 20, 32, device=DEVICE)
    use_backend('torch')
    with torch.no_grad():
        ref = block.forward_ops(x, (4, 5))
    use_backend('triton')
    with torch.no_grad():
        out = block(x, (4, 5))
    assert rel_err(out, ref) < 1e-5


def test_backbone_draws_masks_for_every_block(use_backend):
    """In training mode with drop path the backbone draws (blocks, 2, B) masks once; every sample is kept or
    dropped as a whole, and a block's output differs from the no-drop output exactly where a mask is 0."""
    use_backend('triton')
    model = MLLA(arch='nano', drop_path_rate=0.5).to(DEVICE).train()
    x = torch.randn(4, 3, 32, 32, device=DEVICE)
    keep = model._drop_path_masks(x)
    assert keep.shape == (5, 2, 4) and set(keep.unique().tolist()) <= {0.0, 1.0}
    assert (keep[0] == 1).all()  # the first block's rate is 0
    with forced_backend('torch'):
        assert model._drop_path_masks(x) is None
    model.eval()
    assert model._drop_path_masks(x) is None


def test_a_block_alone_draws_its_own_masks(use_backend):
    """Called without the backbone's masks, a fused block in training mode draws its two branches' masks itself:
    with one seed, the output of the masks that seed draws. Given masks are used as they are; eval mode drops
    nothing."""
    use_backend('triton')
    block = make_block(16, 2, False).train()
    x = torch.randn(3, 4 * 5, 16, device=DEVICE)
    assert block.fused(x)
    torch.manual_seed(7)
    keep, keep_prob = fused_block_masks(block, x, None)
    assert keep.shape == (2, 3) and set(keep.unique().tolist()) <= {0.0, 1.0} and keep_prob == 0.75
    torch.manual_seed(7)
    drawn = block(x, (4, 5))
    assert torch.equal(drawn, block(x, (4, 5), keep))
    assert not torch.equal(drawn, block(x, (4, 5), 1 - keep))
    assert fused_block_masks(block, x, keep)[0] is keep
    assert fused_block_masks(block.eval(), x, keep) == (None, 0.75)


@pytest.mark.gpu
def test_gpu_mlla_t_stage1_block_fp32(use_backend):
    fused, reference, _ = fused_and_reference(2, 200, 336, 64, 2, 'fp32', True, True, use_backend)
    found = errors(fused, reference)
    assert max(found.values()) < 1e-4, found


@pytest.mark.gpu
def test_gpu_mlla_t_stage1_block_bf16(use_backend):
    check_bf16((2, 200, 336, 64), 2, use_backend, slack=2e-3)


def test_float32_tokens_under_autocast_take_the_op_by_op_path(use_backend, monkeypatch):
    from mlla_dense.models.layers import mlla_block_function
    calls = []
    monkeypatch.setattr(mlla_block_function.MLLABlockFunction, 'apply', lambda *a: calls.append(a) or a[0])
    use_backend('triton')
    block = make_block(32, 2, True).eval()
    x = torch.randn(1, 20, 32, device=DEVICE)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        block(x.bfloat16(), (4, 5))
        assert len(calls) == 1
        block(x, (4, 5))
        assert len(calls) == 1


def test_weight_views_of_a_packed_piece():
    """_Weights reads each product's weight and bias at its place in the packed cast, also where the cast is a piece
    of a larger buffer (the backbone packs every block's weights into one)."""
    from mlla_dense.kernels.elementwise.reference import pack_reference
    from mlla_dense.models.layers.mlla_block_function import PACKED, _Weights
    block = make_block(24, 2, recompute=False).cpu()
    params = block_parameters(block)
    p = dict(zip(PARAMETERS, params))
    packed = pack_reference([p[name] for name in PACKED], torch.float64)
    buffer = torch.zeros(packed.numel() + 37, dtype=torch.float64)
    buffer[37:] = packed
    w = _Weights(params, buffer[37:], 24)
    expected = {
        'gate_in_w': torch.cat([p['act_proj.weight'], p['in_proj.weight']]),
        'gate_in_b': torch.cat([p['act_proj.bias'], p['in_proj.bias']]),
        'qk_w': p['attn.qk.weight'], 'qk_b': p['attn.qk.bias'], 'out_w': p['out_proj.weight'],
        'out_b': p['out_proj.bias'], 'fc1_w': p['mlp.fc1.weight'], 'fc1_b': p['mlp.fc1.bias'],
        'fc2_w': p['mlp.fc2.weight'], 'fc2_b': p['mlp.fc2.bias']}
    for name, value in expected.items():
        view = getattr(w, name)
        assert view.shape == value.shape and torch.equal(view, value.double()), name
