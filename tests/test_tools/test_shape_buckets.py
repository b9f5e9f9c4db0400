"""tools/shape_buckets.py and the COCO-like size stream it draws: reproducible, shaped like the pipelines,
and the tool's options ordered as expected (coarser divisors: fewer shapes, more padding; buckets: at most N
shapes)."""
import json

import numpy as np
import pytest

from helpers import run
from mlla_dense.datasets.coco_size_stream import size_stream


@pytest.mark.parametrize('pipeline', ['single-scale', 'ms-crop'])
def test_stream_is_seeded_and_within_the_pipeline_sizes(pipeline):
    batches = size_stream(500, 2, pipeline, seed=3)
    assert len(batches) == 500 and all(b.shape == (2, 2) for b in batches)
    assert all(np.array_equal(a, b) for a, b in zip(batches, size_stream(500, 2, pipeline, seed=3)))
    sizes = np.concatenate(batches)
    assert sizes.max() <= 1333 and np.minimum(sizes[:, 0], sizes[:, 1]).max() <= 800
    if pipeline == 'single-scale':
        landscape = sizes[sizes[:, 1] >= sizes[:, 0]]
        assert (landscape[:, 0] == 800).mean() > 0.7  # most COCO images are 4:3 or 3:2: short side 800
    else:
        assert len({tuple(s) for s in sizes}) > 100


def test_tool_writes_ordered_options(tmp_path):
    result = run(['python', 'tools/shape_buckets.py', '--batches', '1500', '--num-buckets', '4', '8',
                  '--out', str(tmp_path), '--name', 'sb'])
    assert result.returncode == 0, result.stderr[-3000:]
    records = json.loads((tmp_path / 'sb.json').read_text())
    assert (tmp_path / 'sb.png').stat().st_size > 10_000
    for pipeline in ('single-scale', 'ms-crop'):
        rows = {r['option']: r for r in records if r['pipeline'] == pipeline}
        divisors = [rows[f'divisor {d}'] for d in (32, 64, 128, 256)]
        assert [r['distinct_shapes'] for r in divisors] == sorted((r['distinct_shapes'] for r in divisors),
                                                                    reverse=True)
        assert [r['padding_pct'] for r in divisors] == sorted(r['padding_pct'] for r in divisors)
        for n in (4, 8):
            row = rows[f'{n} buckets']
            assert len(row['buckets']) == n and row['distinct_shapes'] <= n + 2
            assert all(h % 32 == 0 and w % 32 == 0 for h, w in row['buckets'])
            assert row['padding_pct'] >= divisors[0]['padding_pct']
    assert '8 buckets' in result.stdout
