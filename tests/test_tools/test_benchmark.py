"""tools/benchmark.py: argument checks, its refusal without a GPU, and the ratios it reports (its timings come from
the GPU machine)."""
import sys

import pytest
import torch

from helpers import ROOT, run

sys.path.insert(0, f'{ROOT}/tools')
from benchmark import add_ratios  # noqa: E402

TOOL = 'tools/benchmark.py'


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the refusal on a machine without CUDA')
def test_without_gpu_refuses(tmp_path):
    result = run(['python', TOOL, '--impls', 'mlla_dense', '--out', str(tmp_path)])
    assert result.returncode != 0 and 'needs a GPU' in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize('argv,message', [
    (['--impls', 'official', 'mlla_dense'], 'give --official-mlla DIR for mlla-t'),
    (['--models', 'vmamba-t', '--impls', 'official-compiled', '--official-mlla', 'x'], 'give --official-vmamba DIR'),
    (['--rounds', '3', '--warmup', '3'], 'leaves none'),
    (['--models', 'mlla-t', 'vmamba-t', '--impls', 'mlla_dense-compiled-fused'],
     "compiles MLLA's fused blocks; vmamba-t is not an MLLA"),
    (['--models', 'vmamba-t', '--impls', 'mlla_dense-compiled', 'mlla_dense-compiled-stored'],
     "stores MLLA's recomputed activations; vmamba-t is not an MLLA"),
    (['--models', 'resnet50'], 'invalid choice'),
])
def test_bad_arguments_are_refused(argv, message, tmp_path):
    result = run(['python', TOOL, *argv, '--out', str(tmp_path)])
    assert result.returncode == 2 and message in result.stderr


def test_ratios_against_the_official_implementation():
    common = dict(model='mlla-t', dtype='bf16', batch=2, height=800, width=1344)
    records = [dict(common, impl='official', fwd_ms=40.0, fwdbwd_ms=100.0, graph_fwdbwd_ms=50.0),
               dict(common, impl='official-compiled', fwd_ms=20.0, fwdbwd_ms=60.0),
               dict(common, impl='mlla_dense', fwd_ms=10.0, fwdbwd_ms=45.0, graph_fwdbwd_ms=20.0),
               dict(common, impl='mlla_dense-compiled', fwd_ms=8.0, fwdbwd_ms=30.0),
               dict(common, model='mlla-s', impl='mlla_dense', fwd_ms=1.0, fwdbwd_ms=1.0)]
    add_ratios(records)
    eager, compiled, other = records[2], records[3], records[4]
    assert (eager['fwd_vs_official'], eager['fwdbwd_vs_official'], eager['graph_fwdbwd_vs_official']) == (0.25, 0.45,
                                                                                                           0.4)
    assert compiled['ratio_basis'] == 'official-compiled' and compiled['fwdbwd_vs_official'] == 0.5
    assert 'fwd_vs_official' not in records[0] and 'fwd_vs_official' not in other


def test_compiled_ratio_without_the_eager_official_row():
    common = dict(model='mlla-t', dtype='bf16', batch=2, height=800, width=1344)
    records = [dict(common, impl='official-compiled', fwdbwd_ms=60.0),
               dict(common, impl='mlla_dense-compiled', fwdbwd_ms=30.0),
               dict(common, impl='mlla_dense', fwdbwd_ms=45.0)]
    add_ratios(records)
    assert records[1]['ratio_basis'] == 'official-compiled' and records[1]['fwdbwd_vs_official'] == 0.5
    assert 'fwdbwd_vs_official' not in records[2]


def test_paired_ratios_are_medians_of_the_rounds_ratios():
    """Each round's ratio pairs the two calls that ran back to back; a host slowing down mid-run moves the ratio of
    medians (0.5 here) but not the paired one. Rounds run consecutively have no pairs."""
    common = dict(model='mlla-t', dtype='bf16', batch=2, height=800, width=1344, order='alternating')
    records = [dict(common, impl='official', fwdbwd_ms=100.0, fwdbwd_times_ms=[40.0, 50.0, 100.0, 160.0, 200.0]),
               dict(common, impl='mlla_dense', fwdbwd_ms=50.0, fwdbwd_times_ms=[16.0, 20.0, 50.0, 60.0, 80.0])]
    add_ratios(records)
    assert records[1]['fwdbwd_vs_official'] == 0.5 and records[1]['fwdbwd_paired_vs_official'] == 0.4
    for r in records:
        r['order'] = 'consecutive'
        r.pop('fwdbwd_paired_vs_official', None)
    add_ratios(records)
    assert 'fwdbwd_paired_vs_official' not in records[1]


def test_compiled_fused_copy(use_backend):
    """mlla_dense-compiled-fused times a copy of the model whose blocks compile as the fused block's ops; the
    model itself keeps compiling op by op."""
    from benchmark import fused_blocks_when_compiled
    from mlla_dense.models.backbones.mlla import MLLA
    use_backend('triton')
    model = MLLA(arch='nano')
    tokens = torch.randn(1, 4, 32)
    for module, fused in ((fused_blocks_when_compiled(model), True), (model, False)):
        block = module.layers[0].blocks[0]
        graph = torch._dynamo.explain(lambda t: block(t, (2, 2)))(tokens).graphs[0]
        code = ''.join(m.code for m in graph.modules())  # with the checkpointed branches' subgraphs
        assert ('mlla_block_fwd' in code) == fused and ('layer_norm_fwd' in code) != fused
    records = [dict(model='mlla-t', dtype='bf16', batch=2, height=8, width=8, impl='official-compiled', fwdbwd_ms=10.),
               dict(model='mlla-t', dtype='bf16', batch=2, height=8, width=8, impl='mlla_dense-compiled-fused',
                    fwdbwd_ms=5.)]
    add_ratios(records)
    assert records[1]['fwdbwd_vs_official'] == 0.5


def test_compiled_stored_copy():
    """mlla_dense-compiled-stored times a copy of the model that recomputes nothing in its backward (as built with
    recompute_wide=False), with the same gradients; the model itself keeps recomputing."""
    from benchmark import wide_activations_stored
    from mlla_dense.models.backbones.mlla import MLLA
    torch.manual_seed(0)
    model = MLLA(arch='nano', drop_path_rate=0.0).train()
    stored = wide_activations_stored(model)
    built = MLLA(arch='nano', drop_path_rate=0.0, recompute_wide=False)
    for copy in (stored, built):
        settings = [(b.recompute, layer.downsample and layer.downsample.recompute_expansion)
                    for layer in copy.layers for b in layer.blocks]
        assert not any(r or d for r, d in settings), settings
    assert all(b.recompute for layer in model.layers for b in layer.blocks)
    assert all(layer.downsample.recompute_expansion for layer in model.layers[:-1])
    x = torch.randn(1, 3, 32, 48, requires_grad=True)
    grads = [torch.autograd.grad(sum(o.sum() for o in m(x)), [x, *m.parameters()]) for m in (model, stored)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
