"""The VSS block as one autograd node (models/layers/vss_block_function.py) against the block op by op
(VSSBlock.forward_ops, the specification) on the PyTorch reference: output and the gradients of the input and of
all 18 parameters, with and without drop path and autocast. In float32 the two agree to rounding; in bfloat16
both are compared with a float64 truth.

CPU: the kernels through the Triton interpreter at small odd shapes; GPU (marker `gpu`): a VMamba-T stage-1
block at 2x800x1344.
"""
import collections
import copy
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import FixedDropPath, rel_err, tf32_off
from mlla_dense.kernels import launcher
from mlla_dense.models.backbones.vmamba import VMamba, VSSBlock
from mlla_dense.models.layers import vss_block_function
from mlla_dense.models.layers.vss_block_function import PARAMETERS, block_parameters, vss_block

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'


def make_block(c, ssm_ratio, seed=0):
    torch.manual_seed(seed)
    block = VSSBlock(c, drop_path=0.25, d_state=1, ssm_ratio=ssm_ratio, dt_rank='auto', d_conv=3, conv_bias=False,
                     mlp_ratio=4.0, with_cp=False).to(DEVICE)
    with torch.no_grad():
        for p in block.parameters():  # away from the zero biases and unit norms of the initialization
            p.add_(0.2 * torch.randn_like(p))
    return block.train()


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


def op_by_op(block, keep, drop_prob):
    """The specification: forward_ops with mmcv's DropPath arithmetic on the given masks."""
    block = copy.copy(block)
    block._modules = dict(block._modules)  # the drop path is replaced on this copy only
    block.drop_path = FixedDropPath(keep, drop_prob) if keep is not None else torch.nn.Identity()
    return block.forward_ops


def fused_and_reference(b, h, w, c, ssm_ratio, dtype, drop_path, use_backend):
    """(fused, op-by-op, float64 truth) runs: each (output, gradients) on the same tokens, masks and gradient."""
    block = make_block(c, ssm_ratio)
    x = torch.randn(b, h, w, c, device=DEVICE)
    keep = torch.tensor([[1., 0.], [0., 1.]], device=DEVICE)[:, :b] if drop_path else None
    keep_prob = 0.75 if drop_path else 1.0
    use_backend('triton')
    fused = run(lambda t: vss_block(block, t, keep, keep_prob), block, x, dtype)
    use_backend('torch')
    reference = run(op_by_op(block, keep, 0.25), block, x, dtype)
    exact = copy.deepcopy(block).double()
    truth = run(op_by_op(exact, keep, 0.25), exact, x.double(), 'fp64')
    return fused, reference, truth


def errors(run_result, against):
    (out, grads), (ref_out, ref_grads) = run_result, against
    assert out.shape == ref_out.shape
    result = {'out': rel_err(out, ref_out)}
    result.update({name: rel_err(grads[name], ref) for name, ref in ref_grads.items()})
    return result


@pytest.mark.parametrize('drop_path', [False, True])
def test_fp32_matches_op_by_op(drop_path, use_backend):
    fused, reference, _ = fused_and_reference(2, 5, 7, 16, 2.0, 'fp32', drop_path, use_backend)
    assert fused[0].dtype == reference[0].dtype == torch.float32
    found = errors(fused, reference)
    assert max(found.values()) < 2e-5, found


def check_bf16(shape, ssm_ratio, use_backend, slack):
    """bfloat16 autocast on a float32 token stream (as VMamba runs): every output and gradient of the fused block
    is as close to the float64 truth as the op-by-op block's (within ``slack``, relative L2)."""
    fused, reference, truth = fused_and_reference(*shape, ssm_ratio, 'bf16', True, use_backend)
    assert fused[0].dtype == reference[0].dtype == torch.float32
    ours, theirs = errors(fused, truth), errors(reference, truth)
    worse = {name: (ours[name], theirs[name]) for name in ours if ours[name] > 1.25 * theirs[name] + slack}
    assert not worse, worse


def test_bf16_autocast_as_accurate_as_op_by_op(use_backend):
    """The interpreter truncates to bfloat16 where GPUs round to nearest (the packed weights, every stored
    product): a bias the GPU test, with its 2e-3 slack, does not have."""
    check_bf16((2, 4, 6, 16), 2.0, use_backend, slack=5e-2)


def test_without_gradients_is_the_same_forward(use_backend):
    block = make_block(16, 1.0).eval()
    x = torch.randn(1, 4, 5, 16, device=DEVICE)
    use_backend('torch')
    with torch.no_grad():
        ref = block.forward_ops(x)
    use_backend('triton')
    with torch.no_grad():
        out = block(x)
    assert rel_err(out, ref) < 1e-5


class _AtenOps(TorchDispatchMode):
    """Counts of the ATen ops that run, by name, and of those the fused blocks run (called from this file)."""

    def __init__(self):
        super().__init__()
        self.counts, self.in_blocks = collections.Counter(), collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.counts[name] += 1
        if any(frame.filename == vss_block_function.__file__ for frame in traceback.extract_stack()):
            self.in_blocks[name] += 1
        return func(*args, **(kwargs or {}))


def test_backbone_blocks_make_no_per_block_fills_exps_or_copies(use_backend, monkeypatch):
    """The host cost of the fused blocks is their launches: in a steady-state backbone forward+backward (ATen ops
    counted, Triton kernels not run) no block zero-fills its conv bias or computes -exp(A_logs) (the backbone
    does every block's in two multi-tensor launches), and no block copies a tensor: its weights come packed in
    the layouts its products read (no broadcast copies), its paths in path order (no reorders)."""
    use_backend('triton')
    monkeypatch.setattr(launcher.Launch, '__call__', lambda self, *args: None)
    torch.manual_seed(0)
    model = VMamba(dims=16, depths=(2, 1), out_indices=(0, 1), ssm_ratio=2.0, drop_path_rate=0.0).to(DEVICE)
    image = torch.randn(2, 3, 32, 32, device=DEVICE)
    blocks = sum(len(layer.blocks) for layer in model.layers)
    for _ in range(2):  # the second call: kept zeros and launch plans exist
        model.zero_grad(set_to_none=True)
        with _AtenOps() as ops, torch.autocast(DEVICE, dtype=torch.bfloat16):
            outs = model(image)
            sum(o.float().sum() for o in outs).backward()
    counts = ops.counts
    assert counts['exp'] == 0 and counts['_foreach_exp'] == 1 and counts['_foreach_neg_'] == 1
    assert sum(counts[name] for name in ('zeros', 'new_zeros', 'zero_', 'fill_', 'zeros_like')) == 0
    assert ops.in_blocks['clone'] == 0 and ops.in_blocks['bmm'] + ops.in_blocks['baddbmm_'] == 6 * blocks


def test_parameters_are_read_at_each_call():
    """The CUDA-graph captures differentiate with respect to aliases of the parameters swapped in by
    functional_call (runtime/training_graphs.py): the block must read those, not the module's own tensors."""
    from torch.func import functional_call
    block = make_block(16, 1.0)
    aliases = {name: p.view_as(p) for name, p in block.named_parameters()}
    holder = torch.nn.Module()
    holder.block = block
    holder.forward = lambda x: block_parameters(block)
    read = functional_call(holder, {f'block.{name}': t for name, t in aliases.items()}, (None,))
    assert len(read) == len(PARAMETERS) and all(t is aliases[name] for name, t in zip(PARAMETERS, read))


def test_backbone_draws_masks_for_every_block(use_backend):
    """In training mode with drop path the backbone draws (blocks, 2, B) masks once, and block j gets row j: a
    block whose row is all 0 returns its input."""
    from mlla_dense.models.backbones.vmamba import VMamba
    use_backend('triton')
    model = VMamba(dims=16, depths=(1, 2), drop_path_rate=0.5, out_indices=(1,)).to(DEVICE).train()
    x = torch.randn(2, 3, 32, 32, device=DEVICE)
    keep = model._drop_path_masks(x)
    assert keep.shape == (3, 2, 2) and set(keep.unique().tolist()) <= {0.0, 1.0}
    assert (keep[0] == 1).all()  # the first block's rate is 0
    fixed = torch.tensor([[[1., 1.], [1., 1.]], [[1., 0.], [0., 1.]], [[0., 0.], [0., 0.]]], device=DEVICE)
    model._drop_path_masks = lambda tokens: fixed
    seen = []
    for block in (*model.layers[0].blocks, *model.layers[1].blocks):
        block.register_forward_hook(lambda module, args, out: seen.append((args, out)))
    model(x)
    assert [torch.equal(args[1], row) for (args, _), row in zip(seen, fixed)] == [True] * 3
    (tokens, *_), out = seen[2]
    assert torch.equal(out, tokens)
    del model._drop_path_masks
    with torch.no_grad():
        use_backend('torch')
        assert model._drop_path_masks(x) is None
        use_backend('triton')
        model.eval()
        assert model._drop_path_masks(x) is None


@pytest.mark.gpu
def test_gpu_fp32_stage1_block(use_backend):
    """VMamba-T's stage-1 block at 2x800x1344 (200x336 tokens, 96 channels), TF32 off. A weight gradient is a
    float32 sum over the 134,400 tokens, whose rounding depends on how cuBLAS splits it (x_proj's from one
    batched product was 5.1e-6 from float64, the op-by-op path's 1.9e-6, H200): those get the slack of one such
    sum's rounding, sqrt(tokens) float32 epsilons."""
    with tf32_off():
        fused, reference, truth = fused_and_reference(2, 200, 336, 96, 1.0, 'fp32', True, use_backend)
    ours, theirs = errors(fused, truth), errors(reference, truth)
    token_sum = (2 * 200 * 336) ** 0.5 * 2.0 ** -24
    slack = {name: 1e-6 if name in ('out', 'x') else token_sum for name in ours}
    worse = {name: (ours[name], theirs[name]) for name in ours if ours[name] > 1.25 * theirs[name] + slack[name]}
    assert not worse, worse


@pytest.mark.gpu
def test_gpu_bf16_block(use_backend):
    """VMamba-T's stage-1 channels on a 50x84 grid (the float64 truth's scan is a loop over positions)."""
    check_bf16((2, 50, 84, 96), 1.0, use_backend, slack=2e-3)
