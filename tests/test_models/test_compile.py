"""Both backbones trace into one torch.compile graph with the Triton kernels (custom ops), in training mode
with gradients, so ``torch.compile(model)`` never falls back to eager in the middle of a backbone."""
import time

import pytest
import torch

from mlla_dense.kernels import elementwise
from mlla_dense.kernels.kernel_op import clear_plans
from mlla_dense.kernels.linear_attention import rope
from mlla_dense.kernels.partial_sums import live_counters
from mlla_dense.models.backbones.mlla import MLLA
from mlla_dense.models.backbones.vmamba import VMamba

from helpers import tf32_off

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


def _loss(model, image):
    return sum(out.float().square().mean() for out in model(image))


@pytest.mark.parametrize('recompute', [False, True])
def test_compiled_mlla_runs_its_fused_blocks(recompute, use_backend):
    """With compile_fused_blocks, under torch.compile MLLA's blocks are the fused block's two custom ops (one
    graph): every gradient equals the eager fused blocks' (same kernels, same drop-path masks), and no table or
    arrival counter is kept on the way (cudagraph trees' pool could hand such memory out again)."""
    use_backend('triton')
    model = MLLA(arch='nano', drop_path_rate=0.2, with_cp=False, compile_fused_blocks=True).train()
    for block in (b for layer in model.layers for b in layer.blocks):
        block.recompute = recompute
    image = torch.randn(1, 3, 40, 56)
    graph = torch._dynamo.explain(lambda image: _loss(model, image))(image).graphs[0]
    code = ''.join(module.code for module in graph.modules())
    assert 'mlla_block_fwd' in code and 'layer_norm_fwd' not in code
    params = list(model.parameters())
    torch.manual_seed(1)
    eager = torch.autograd.grad(_loss(model, image), params)
    rope._cache.clear()
    elementwise._pack_plans.clear()
    clear_plans()  # the compiled run builds its launch plans anew
    kept = {id(t) for t in live_counters()}
    torch.manual_seed(1)
    compiled = torch.autograd.grad(_loss(torch.compile(model, backend='aot_eager', fullgraph=True), image), params)
    for a, b in zip(eager, compiled):
        assert torch.equal(a, b)
    # the graph packs the weights and builds the RoPE tables, and the ops' kernels take fresh arrival counters:
    # the ops leave no device tensor behind
    assert not rope.cached_tables() and not elementwise._pack_plans
    assert {id(t) for t in live_counters()} <= kept


def test_compiled_blocks_op_by_op_take_the_backbones_masks_and_tables(use_backend):
    """Op by op under torch.compile, MLLA's blocks take the drop-path masks the backbone draws for all blocks at
    once (as the eager fused blocks do) and their stage's RoPE tables: with the same seed, the compiled model's
    gradients equal the eager fused model's to float32 rounding (relative L2 of each parameter's, 5e-3: the stem's
    convolution weights differ by ~1e-3 between any two float32 implementations, see below), and other seeds
    give gradients more than 10x as far (the masks matter)."""
    use_backend('triton')
    torch.manual_seed(0)
    model = MLLA(embed_dim=16, depths=(2, 1), num_heads=(1, 2), out_indices=(0, 1), drop_path_rate=0.5).train()
    image = torch.randn(2, 3, 40, 56)
    params = list(model.parameters())
    torch.manual_seed(1)
    eager = torch.autograd.grad(_loss(model, image), params)
    compiled_model = torch.compile(model, backend='aot_eager', fullgraph=True)
    names = [name for name, _ in model.named_parameters()]
    errors = {}
    for seed in (1, 2, 3, 4):
        torch.manual_seed(seed)
        errors[seed] = _gradient_errors(names, eager, torch.autograd.grad(_loss(compiled_model, image), params))
    other = max(errors[2], errors[3], errors[4])
    print(f'largest gradient errors against eager: same seed {errors[1][:3]}, other seeds {other[:3]}')
    assert errors[1][0][0] < 5e-3, errors[1][:3]
    assert other[0][0] > 10 * errors[1][0][0], (other[:3], errors[1][:3])
    torch._dynamo.reset()


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_fused_block_op_registration(dtype, use_backend):
    """torch.library.opcheck of the fused block's two ops (parameters and tokens in ``dtype``, no autocast):
    schema, fake implementations against the real ones (shapes and dtypes of every output and gradient), the
    forward's autograd registration, AOT dispatch at static shapes (the kernels' launch plans need concrete
    sizes)."""
    from mlla_dense.models.layers.mlla_block_function import BlockConfig, block_parameters, compiled_op_inputs
    use_backend('triton')
    block = MLLA(arch='nano').layers[0].blocks[0].to(dtype)
    x = torch.randn(2, 5 * 6, block.norm1.normalized_shape[0], dtype=dtype, requires_grad=True)
    keep = torch.tensor([[1., 0.], [1., 1.]])
    params = block_parameters(block)
    options = (5, 6, block.attn.num_heads, 1e-5, 1e-5, dtype, 0.8, False)
    with torch.no_grad():
        inputs = compiled_op_inputs(x, params, BlockConfig(*options))
    checks = ('test_schema', 'test_faketensor', 'test_aot_dispatch_static')
    forward = torch.ops.mlla_dense.mlla_block_fwd.default
    results = torch.library.opcheck(forward, (x, keep, params, *inputs, *options, True),
                                    test_utils=checks + ('test_autograd_registration',))
    assert set(results.values()) == {'SUCCESS'}, results
    with torch.no_grad():
        out, *saved = forward(x, keep, params, *inputs, *options, True)
    detached = [p.detach() for p in params]
    results = torch.library.opcheck(torch.ops.mlla_dense.mlla_block_bwd.default,
                                    (torch.randn_like(out), x.detach(), keep, detached, *inputs, saved, *options),
                                    test_utils=checks)
    assert set(results.values()) == {'SUCCESS'}, results


# (backbone, compile_fused_blocks, drop-path rate). Compiled MLLA blocks, op by op or fused, and the eager fused
# blocks take the backbone's one draw of drop-path masks; the float64 truth runs the reference path op by op
# eagerly, whose DropPath modules draw their own: only the cases without drop path are compared against it.
REDUCE_OVERHEAD_CASES = [('mlla', False, 0.0), ('mlla', True, 0.0), ('mlla', True, 0.1), ('vmamba', False, 0.0)]


# How far a float32 gradient of the stem's and the downsamples' convolutions may be from float64 or from eager,
# whatever eager's error: before BatchNorm they are ill-conditioned in float32, and a compile that rounds elsewhere
# moves them by several times eager's error (benchmarks/NOTES.md, "Twenty-ninth session"). The blocks, where the
# kernels act, keep the tighter limits.
FLOAT32_REACH = 1e-2


def _within(errors, limit):
    """Whether every (error, name) of :func:`_gradient_errors` is within ``limit``, or within FLOAT32_REACH for
    the convolutional stem and downsamples."""
    return all(e <= (max(limit, FLOAT32_REACH) if n.startswith('patch_embed.') or '.downsample.' in n else limit)
               for e, n in errors)


def _gradient_errors(names, expected, actual):
    """(error, name) per parameter, largest first: |a - b| / max(|a|, 1e-3 max |a|) in L2 norms. At random
    initialization some gradients are 1e-10 or less of the largest (a convolution's bias before BatchNorm: zero),
    so their float32 values are rounding noise; the floor measures those against the gradients' scale."""
    floor = 1e-3 * max(float(a.norm()) for a in expected)
    return sorted(((float((a - b).norm()) / max(float(a.norm()), floor), n)
                   for n, a, b in zip(names, expected, actual)), reverse=True)


def _float64_gradients(model64, model, image, params64):
    """The gradients of ``model``'s loss in float64 (the reference path, op by op): ``model64`` takes ``model``'s
    current weights and buffers first."""
    from mlla_dense.kernels.backend import forced_backend
    with torch.no_grad():
        for mine, theirs in zip(model64.state_dict().values(), model.state_dict().values()):
            mine.copy_(theirs)
    with forced_backend('torch'):
        return [g.float() for g in torch.autograd.grad(_loss(model64, image.double()), params64)]


@pytest.mark.gpu
@pytest.mark.parametrize('name,fused,drop_path', REDUCE_OVERHEAD_CASES,
                         ids=['mlla-op-by-op', 'mlla-fused', 'mlla-fused-drop-path', 'vmamba'])
def test_reduce_overhead_gradients(name, fused, drop_path, monkeypatch):
    """torch.compile(mode='reduce-overhead') (cudagraph trees) in float32 training, with cudagraph trees' pool
    checks on and no step allowed to skip CUDA graphs, over steps that record, change the input size (a static
    recompile, ``dynamic=False``, as the README advises for varying sizes), replay at that size and come back to
    the first one, with an SGD update of the weights after each step:

    - every step's gradients equal those of the same graph compiled without CUDA graphs (float32 noise: 1e-5),
      with the same drop-path masks (Inductor's RNG falls back to eager's);
    - they are as close to a float64 truth as the eager model's float32 gradients are (within 3x of eager's
      largest error: Inductor fuses and reduces what lies between the kernels, so it rounds at other points), or,
      with drop path (no float64 truth with the same masks), within 5e-3 of the eager model's; the stem's and
      downsamples' weights within FLOAT32_REACH at least.

    cuDNN picks deterministic algorithms; Inductor's caches stay on and its deterministic mode off, the setting in
    which the graphed and plain compiles gave bit-identical gradients (benchmarks/NOTES.md, "Thirty-second
    session").

    The graphed call runs first at each step, so the kernels' launch plans for a new size are first built inside
    cudagraph trees' warm-up."""
    import copy

    import torch._inductor.config as inductor_config
    from torch._dynamo.utils import counters
    monkeypatch.setattr(inductor_config, 'fallback_random', True)
    monkeypatch.setattr(inductor_config, 'deterministic', False)
    monkeypatch.setattr(inductor_config, 'force_disable_caches', False)
    monkeypatch.setattr(inductor_config, 'autotune_local_cache', True)
    monkeypatch.setattr(inductor_config.triton, 'slow_path_cudagraph_asserts', True)
    monkeypatch.setattr(torch.backends.cudnn, 'deterministic', True)
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', False)
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = (MLLA(arch='nano', drop_path_rate=drop_path) if name == 'mlla' else
             VMamba(dims=16, depths=(1, 1, 1, 1), ssm_ratio=2.0, drop_path_rate=drop_path)).cuda().train()
    for block in (b for layer in model.layers for b in layer.blocks):
        block.compile_fused = fused
    names, params = zip(*model.named_parameters())
    model64 = copy.deepcopy(model).double()
    params64 = list(model64.parameters())
    graphed = torch.compile(model, mode='reduce-overhead', dynamic=False)
    plain = torch.compile(model, dynamic=False)
    start = time.perf_counter()
    try:
        with tf32_off():  # not monkeypatch: on torch 2.13 it cannot restore allow_tf32
            for step, size in enumerate([(64, 96), (96, 64), (96, 64), (64, 96)]):
                image = torch.randn(2, 3, *size, device='cuda')
                grads = {}
                for label, runner in (('reduce-overhead', graphed), ('compiled', plain), ('eager', model)):
                    torch.compiler.cudagraph_mark_step_begin()
                    torch.manual_seed(step)
                    grads[label] = [g.clone() for g in torch.autograd.grad(_loss(runner, image), params)]
                to_compiled = _gradient_errors(names, grads['compiled'], grads['reduce-overhead'])
                print(f'{name} fused={fused} step {step} {size} ({time.perf_counter() - start:.0f} s): largest errors '
                      f'against compiled {to_compiled[:2]}', flush=True)
                assert to_compiled[0][0] < 1e-5, (step, size, to_compiled[:3])
                if drop_path:
                    to_eager = _gradient_errors(names, grads['eager'], grads['reduce-overhead'])
                    print(f'  drop path {drop_path}, against eager {to_eager[:2]}')
                    assert _within(to_eager, 5e-3), (step, size, to_eager[:3])
                else:
                    truth = _float64_gradients(model64, model, image, params64)
                    graph_error = _gradient_errors(names, truth, grads['reduce-overhead'])
                    eager_error = _gradient_errors(names, truth, grads['eager'])
                    print(f'  against float64: graphed {graph_error[:2]}, eager {eager_error[:2]}')
                    assert _within(graph_error, 3 * eager_error[0][0] + 1e-6), (step, size, graph_error[:3],
                                                                                 eager_error[:3])
                with torch.no_grad():
                    for p, g in zip(params, grads['eager']):
                        p.sub_(1e-2 * g)
            assert counters['inductor']['cudagraph_skips'] == 0, dict(counters['inductor'])
    finally:
        torch._dynamo.reset()
