"""The design-space backbone: every switch of the mixer against the formula written out directly (float64,
forward and gradients), the blocks, MLLA as one point of the space, OpenMMLab registration and options."""
import pytest
import torch

import mlla_dense  # noqa: F401  (registers the backbones)
import plain_design_space as plain
from mlla_dense.models.backbones.design_space import DesignSpaceBlock, LinearAttentionDesignSpace
from mlla_dense.models.backbones.mlla import MLLA
from mlla_dense.models.layers.design_space_mixer import DesignSpaceMixer
from test_models.test_mlla import SMALL, randomize

GRID = (3, 5)
# One switch at a time from the linear-attention baseline, then combinations: Mamba's selective scan (input and
# forget gate, shortcut, no normalization, one head of state width 4) and MLLA (RoPE, LePE, normalized).
MIXER_CASES = [
    dict(), dict(input_gate=True), dict(forget_gate='retnet', scan='raster'), dict(forget_gate='retnet'),
    dict(forget_gate='mamba2', scan='raster'), dict(forget_gate='mamba2'), dict(forget_gate='gla', scan='raster'),
    dict(forget_gate='gla'), dict(shortcut=True), dict(attn_norm=False), dict(num_heads=1),
    dict(num_heads=1, key_dim=4), dict(rope=True), dict(lepe=True), dict(forget_gate='mamba2', rope=True),
    dict(forget_gate='gla', attn_norm=False, lepe=True),
    dict(input_gate=True, forget_gate='mamba2', shortcut=True, attn_norm=False, num_heads=1, key_dim=4),
    dict(rope=True, lepe=True),
]


def perturbed(module, scale=0.3, seed=0):
    """float64 ``module`` with every parameter moved off its initial value (so zero biases, ones, do not hide
    a term)."""
    gen = torch.Generator().manual_seed(seed)
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return module


def outputs_and_grads(fn, x, params, seed=1):
    """fn(x, params) and the gradients of a random projection of it with respect to x and every parameter."""
    leaves = [x.detach().clone().requires_grad_()] + [p.detach().clone().requires_grad_() for p in params]
    out = fn(leaves[0], leaves[1:])
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(out.dtype)
    return out, torch.autograd.grad((out * weights).sum(), leaves)


def assert_close(ours, theirs, tol):
    errors = [((a - b).norm() / b.norm()).item() for a, b in zip(ours, theirs)]
    assert max(errors) < tol, errors


@pytest.mark.parametrize('switches', MIXER_CASES, ids=lambda s: '-'.join(f'{k}={v}' for k, v in s.items()) or 'base')
def test_mixer_equals_formula(switches):
    """Output and gradients (input and every parameter) of the mixer equal the formula's, evaluated pair by pair
    in plain_design_space.py. 1e-10 relative; with RoPE 1e-7 (the package's RoPE tables are float32)."""
    torch.manual_seed(0)  # the initial weights and the input: the RoPE cases sit within 2x of their tolerance
    options = dict(dict(num_heads=2), **switches)
    module = perturbed(DesignSpaceMixer(8, **options))
    names = [name for name, _ in module.named_parameters()]
    x = torch.randn(2, GRID[0] * GRID[1], 8, dtype=torch.float64)

    def ours(x, params):
        return torch.func.functional_call(module, dict(zip(names, params)), (x, GRID))

    def formula(x, params):
        sd = dict(zip(names, params))
        return torch.stack([plain.mixer(sd, '', x[b], *GRID, **options) for b in range(x.shape[0])])

    params = [p for _, p in module.named_parameters()]
    out, grads = outputs_and_grads(ours, x, params)
    ref, ref_grads = outputs_and_grads(formula, x, params)
    tol = 1e-7 if options.get('rope') else 1e-10
    assert_close([out] + list(grads), [ref] + list(ref_grads), tol)


def test_mlla_switches_take_mlla_kernel_and_others_do_not():
    assert DesignSpaceMixer(8, 2, rope=True, lepe=True).mlla_kernel
    for other in (dict(attn_norm=False), dict(forget_gate='retnet'), dict(key_dim=2), dict(lepe=False)):
        assert not DesignSpaceMixer(8, 2, **dict(dict(rope=True, lepe=True), **other)).mlla_kernel


def test_gated_mixer_through_triton_kernels(use_backend):
    """The Triton path of a gated mixer (interpreter on CPU) in float32 against its float64 reference path: one
    decay per key channel, RoPE (two kernel calls: the rotated numerator, the plain normalizer)."""
    module = perturbed(DesignSpaceMixer(32, 2, forget_gate='gla', rope=True, input_gate=True))
    x = torch.randn(2, 4 * 5, 32, dtype=torch.float64)
    params = [p for _, p in module.named_parameters()]
    names = [name for name, _ in module.named_parameters()]

    def run(x, params):
        return torch.func.functional_call(module, dict(zip(names, params)), (x, (4, 5)))

    ref = outputs_and_grads(run, x, params)
    use_backend('triton')
    module.float()
    out = outputs_and_grads(run, x.float(), [p.float() for p in params])
    assert_close([out[0]] + list(out[1]), [ref[0]] + list(ref[1]), 1e-5)


@pytest.mark.parametrize('rope', [False, True])
def test_gated_mixer_under_autocast_takes_autocast_operands(monkeypatch, rope):
    """Under bfloat16 autocast the gated kernel gets q, k, v in bfloat16 (as torch.matmul would take them) and
    float32 log decays; the output stays within bfloat16's rounding of the float32 one."""
    import mlla_dense.models.layers.design_space_mixer as mixer_module
    module = perturbed(DesignSpaceMixer(32, 2, forget_gate='mamba2', rope=rope)).float().eval()
    x = torch.randn(2, 4 * 5, 32)
    seen = []
    real = mixer_module.gated_linear_attention

    def recording(q, k, v, log_decay, *args):
        seen.append((q.dtype, k.dtype, v.dtype, log_decay.dtype))
        return real(q, k, v, log_decay, *args)

    monkeypatch.setattr(mixer_module, 'gated_linear_attention', recording)
    with torch.no_grad():
        full = module(x, (4, 5))
        seen.clear()
        with torch.autocast('cpu', dtype=torch.bfloat16):
            half = module(x, (4, 5))
    assert seen and all(s == (torch.bfloat16,) * 3 + (torch.float32,) for s in seen)
    assert ((half.float() - full).norm() / full.norm()).item() < 2e-2


@pytest.mark.parametrize('kind,cpe', [('transformer', True), ('mamba-sub', False), ('mamba-all', True)])
def test_block_equals_formula(kind, cpe):
    """3e-7 relative: the blocks' LayerNorms compute in float32 (mlla_dense.kernels.layer_norm), as MLLA's do, so
    the float64 block carries a few float32 roundings (~6e-8 each); a wrong term would be orders larger."""
    torch.manual_seed(0)
    mixer = dict(num_heads=2, forget_gate='mamba2', lepe=True)
    block = perturbed(DesignSpaceBlock(8, kind, mixer, cpe=cpe, mlp_ratio=2, expand=1.5, drop=0., drop_path=0.))
    x = torch.randn(2, GRID[0] * GRID[1], 8, dtype=torch.float64)
    with torch.no_grad():
        out = block(x, GRID)
    sd = block.state_dict()
    for b in range(2):
        ref = plain.block(sd, '', x[b], *GRID, kind, cpe, mixer)
        assert ((out[b] - ref).norm() / ref.norm()).item() < 3e-7


MLLA_POINT = dict(arch='mlla-t', macro='mlla', block='mamba-sub', pos_embed=('cpe', 'lepe', 'rope'),
                  forget_gate='none', attn_norm=True, input_gate=False, shortcut=False)


@pytest.mark.parametrize('mlla_kernel,sizes', [(True, dict(arch='tiny')), (False, SMALL)])
def test_mlla_point_equals_mlla(mlla_kernel, sizes):
    """MLLA's switches with MLLA's weights (loaded strictly, same parameter names) give MLLA's outputs: fp32
    within 1e-5 relative; MLLA-T through MLLA's fused linear attention, a smaller MLLA through the mixer's
    general path."""
    mlla = randomize(MLLA(**sizes, drop_path_rate=0.)).eval()
    arch = dict(arch='mlla-t') if 'arch' in sizes else dict(sizes, arch=None)
    point = LinearAttentionDesignSpace(**dict(MLLA_POINT, **arch), drop_path_rate=0.).eval()
    point.load_state_dict(mlla.state_dict(), strict=True)
    for module in point.modules():
        if isinstance(module, DesignSpaceMixer):
            module.mlla_kernel = mlla_kernel
    image = torch.randn(2, 3, 61, 90)
    with torch.no_grad():
        expected, outs = mlla(image), point(image)
    for out, ref in zip(outs, expected):
        assert out.shape == ref.shape and ((out - ref).norm() / ref.norm()).item() < 1e-5


def test_mlla_point_loads_official_checkpoint(tmp_path):
    """The official ImageNet checkpoint format ({'model': ...} with the classifier) loads through init_cfg."""
    sd = MLLA(**SMALL).state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith('norm')}
    sd.update({'head.weight': torch.zeros(1000, 256), 'head.bias': torch.zeros(1000), 'norm.weight': torch.ones(256),
               'norm.bias': torch.zeros(256)})
    torch.save({'model': sd}, tmp_path / 'mlla.pth')
    point = LinearAttentionDesignSpace(**dict(MLLA_POINT, arch=None, **SMALL),
                                       init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'mlla.pth')))
    point.init_weights()
    assert torch.equal(point.layers[1].blocks[1].attn.qk.weight, sd['layers.1.blocks.1.attn.qk.weight'])


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_registered_in_both_registries(scope):
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    assert registry.get('LinearAttentionDesignSpace') is LinearAttentionDesignSpace
    model = registry.build(dict(type='LinearAttentionDesignSpace', arch='nano', forget_gate='gla', block='mamba-all'))
    assert isinstance(model, LinearAttentionDesignSpace)


@pytest.mark.parametrize('switches', [dict(), dict(macro='mlla', pos_embed=('ape', 'cpe')),
                                      dict(block='mamba-sub', forget_gate='retnet', scan='raster', num_heads=1)])
@pytest.mark.parametrize('size', [(45, 61), (32, 32), (5, 3)])
def test_output_shapes_any_size(switches, size):
    model = LinearAttentionDesignSpace(arch='nano', **switches).eval()
    h, w = size
    with torch.no_grad():
        outs = model(torch.randn(2, 3, h, w))
    expected_h, expected_w = -(-h // 4), -(-w // 4)
    for i, out in enumerate(outs):
        assert out.shape == (2, 32 * 2 ** i, expected_h, expected_w)
        expected_h, expected_w = -(-expected_h // 2), -(-expected_w // 2)


def test_absolute_position_embedding_resized_bicubically():
    """APE at 56x56 is resized to other grids like Swin's (bicubic, half-pixel centres, clamped borders)."""
    model = LinearAttentionDesignSpace(arch='nano', pos_embed=('ape',)).double()
    table = model.patch_embed.ape.absolute_pos_embed
    tokens = torch.zeros(1, 13 * 29, 32, dtype=torch.float64)
    resized = model.patch_embed.ape(tokens, (13, 29))[0].T.reshape(32, 13, 29)
    expected = plain.bicubic_resize(table[0].detach(), 13, 29)
    assert ((resized - expected).norm() / expected.norm()).item() < 1e-12
    assert torch.equal(model.patch_embed.ape(torch.zeros(1, 56 * 56, 32, dtype=torch.float64), (56, 56))[0].T.reshape(32, 56, 56),
                       table[0])


def test_training_step_and_frozen_stages():
    model = LinearAttentionDesignSpace(arch='nano', forget_gate='mamba2', input_gate=True, shortcut=True,
                                       frozen_stages=1, with_cp=True)
    model.train()
    sum(o.square().mean() for o in model(torch.randn(2, 3, 40, 48))).backward()
    assert all(p.grad is None for p in model.layers[0].parameters())
    assert all(p.grad is not None for p in model.layers[1].parameters())


@pytest.mark.parametrize('bad,match', [(dict(block='hybrid'), 'block'), (dict(forget_gate='lstm'), 'forget_gate'),
                                       (dict(scan='zigzag'), 'scan'), (dict(pos_embed=('alibi',)), 'pos_embed'),
                                       (dict(macro='convnext'), 'macro'), (dict(arch='swin-b'), 'arch'),
                                       (dict(num_heads=(1, 2)), 'num_heads')])
def test_invalid_switches_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        LinearAttentionDesignSpace(**dict(dict(arch='nano'), **bad))
