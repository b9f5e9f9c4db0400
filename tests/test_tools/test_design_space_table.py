"""tools/design_space_table.py on a machine without a GPU: the table (parameters, FLOPs, the paper's numbers,
throughput skipped with a message) and the shapes smoke training of a gated row, on a tiny dataset."""
import json

from helpers import run


def test_table_without_gpu(tmp_path):
    result = run(['python', 'tools/design_space_table.py', '--rows', 'baseline', 'single-head', '--out',
                  str(tmp_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'GPU throughput: skipped (no CUDA device)' in result.stdout
    with open(tmp_path / 'design_space.json') as f:
        payload = json.load(f)
    assert payload['gpu_throughput'].startswith('skipped')
    base, single = payload['records']
    assert (base['row'], single['row']) == ('baseline', 'single-head')
    # the paper's ordering of size: one head of 16-channel queries and keys is smaller and cheaper
    assert single['params_m'] < base['params_m'] and single['flops_g'] < base['flops_g']
    assert abs(base['params_m'] - 27.5) < 0.1 and abs(base['flops_g'] - 4.46) < 0.05  # Swin-T's backbone
    assert base['paper_img_s'] == 1152 and single['paper_img_s_rel'] == round(1540 / 1152, 3)
    assert (tmp_path / 'design_space.png').stat().st_size > 10_000


def test_shapes_smoke_training(tmp_path):
    result = run(['python', 'tools/design_space_table.py', '--train', '--rows', 'forget-gate', '--data',
                  str(tmp_path / 'shapes'), '--work-dir', str(tmp_path / 'work'), '--num-train', '8', '--num-val',
                  '2', '--det-epochs', '1', '--seg-iters', '2', '--out', str(tmp_path)], env=dict(OMP_NUM_THREADS='2'))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    with open(tmp_path / 'design_space_shapes.json') as f:
        payload = json.load(f)
    assert payload['note'].startswith('smoke comparison, not a result')
    record, = payload['records']
    assert record['row'] == 'forget-gate' and 0 <= record['box_mAP'] <= 1 and 0 <= record['mIoU'] <= 1
    assert all(record[f'{task}_loss_{at}'] > 0 for task in ('det', 'seg') for at in ('first', 'last'))
    assert (tmp_path / 'design_space_shapes.png').stat().st_size > 10_000
