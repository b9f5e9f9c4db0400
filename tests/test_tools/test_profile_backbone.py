"""tools/profile_backbone.py: categories of kernel and op names, and a CPU profile of MLLA-nano."""
import json
import sys

import pytest
import torch

from helpers import ROOT, run

sys.path.insert(0, f'{ROOT}/tools')
from profile_backbone import OpTimer, category  # noqa: E402

TOOL = 'tools/profile_backbone.py'


@pytest.mark.parametrize('name,expected', [
    ('_output_kernel', 'linear attention (Triton)'),
    ('_grad_kv_kernel', 'linear attention (Triton)'),
    ('_dwconv_grad_weight_kernel', 'depthwise conv (Triton)'),
    ('_scan_backward_kernel', 'selective scan (Triton)'),
    ('_scan_finish_kernel', 'selective scan (Triton)'),
    ('_sequences_to_grid_kernel', 'SS2D layout (Triton)'),
    ('cudnn_infer_ampere_scudnn_128x32_relu_small_nn_v1', 'convolution'),
    ('aten::mkldnn_convolution', 'convolution'),
    ('sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64', 'matmul'),
    ('nvjet_tst_128x64_64x8_1x2_h_bz_coopA_NTT', 'matmul'),
    ('aten::addmm', 'matmul'),
    ('void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float, float>', 'normalization'),
    ('_layer_norm_bwd_kernel', 'layer norm (Triton)'),
    ('_tap_sum_kernel', 'depthwise conv (Triton)'),
    ('void at::native::elementwise_kernel<128, 2, direct_copy_kernel_cuda>', 'copies and layout'),
    ('Memcpy DtoD (Device -> Device)', 'copies and layout'),
    ('void at::native::vectorized_elementwise_kernel<4, at::native::silu_kernel_cuda>', 'elementwise'),
    ('triton_poi_fused_add_mul_0', 'elementwise'),
    ('triton_red_fused_sum_1', 'reductions'),
    ('aten::empty', 'other'),
])
def test_categories(name, expected):
    assert category(name) == expected


def test_cpu_profile_of_mlla_nano(tmp_path):
    result = run(['python', TOOL, '--model', 'mlla-nano', '--size', '64x96', '--batch', '1', '--dtype', 'fp32',
                  '--impl', 'eager-reference', '--iters', '1', '--python-profile', '--out', str(tmp_path),
                  '--name', 'p'])
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    with open(tmp_path / 'p.json') as f:
        record = json.load(f)
    assert record['pass_'] == 'forward+backward' and record['time_basis'] == 'self CPU time of ops'
    cats = record['categories']
    assert cats['convolution'] > 0 and cats['matmul'] > 0 and cats['normalization'] > 0
    assert sum(cats.values()) == pytest.approx(record['busy_ms'], abs=0.01)
    times = [t['ms'] for t in record['top']]
    assert times == sorted(times, reverse=True)
    assert all(t['category'] == category(t['name']) for t in record['top'])
    assert record['wall_ms'] > 0 and (tmp_path / 'p.png').stat().st_size > 0
    assert 'ms wall per iteration' in result.stdout
    functions = record['host_functions']
    own = [f['own_ms'] for f in functions]
    assert own == sorted(own, reverse=True) and all(f['cumulative_ms'] >= f['own_ms'] for f in functions)
    assert any('conv2d' in f['function'] for f in functions), functions


def test_op_timer_times_every_op_of_the_fused_mlla_block(use_backend):
    """The per-op host table lists each kernel op that MLLA's blocks call from their one autograd node, the linear
    attention included (Triton interpreter, a small MLLA-nano)."""
    from mlla_dense.models.backbones.mlla import MLLA
    use_backend('triton')
    torch.manual_seed(0)
    model = MLLA(arch='nano', drop_path_rate=0.0).train()
    with OpTimer() as timer:
        sum(out.square().mean() for out in model(torch.randn(2, 3, 32, 32))).backward()
    ops = {row['op'] for row in timer.table(1)}
    assert {'linear_attention forward', 'linear_attention backward', 'layer_norm forward', 'layer_norm backward',
            'depthwise_conv forward', 'depthwise_conv backward'} <= ops, ops


@pytest.mark.parametrize('argv,message', [
    (['--size', '800'], 'must be HxW'),
    (['--dtype', 'fp32', '--impl', 'official'], 'has no mlla-nano'),
    (['--model', 'vmamba-t', '--dtype', 'fp32', '--impl', 'official'], 'give --official-vmamba DIR'),
    (['--model', 'mlla-t', '--dtype', 'fp32', '--impl', 'official-compiled'],
     "--impl official-compiled profiles the authors' mlla-t: give --official-mlla DIR"),
    (['--model', 'vmamba-t', '--dtype', 'fp32', '--impl', 'mlla_dense-compiled-fused'],
     "compiles MLLA's fused blocks; vmamba-t is not an MLLA"),
    pytest.param(['--dtype', 'bf16'], 'needs a GPU', marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason='refused only where there is no GPU')),
])
def test_bad_arguments_are_refused(argv, message):
    result = run(['python', TOOL, '--model', 'mlla-nano', *argv])
    assert result.returncode == 2 and message in result.stderr
