"""enable_tta (tools/test.py --tta, the demo's UperNet evaluation) sets a config up as mmseg's and mmdet's test.py
--tta do: the model inside the config's tta_model, the test pipeline replaced by its tta_pipeline."""
import pytest

from helpers import DET_DEMO, SEG_DEMO
from mlla_dense.utils.run_config import enable_tta, load_config


def test_wraps_the_model_and_replaces_the_test_pipeline():
    cfg = load_config(SEG_DEMO)
    model = cfg.model.copy()
    enable_tta(cfg)
    assert cfg.model.type == 'SegTTAModel' and cfg.model.module == model
    steps = cfg.test_dataloader.dataset.pipeline
    assert [step['type'] for step in steps] == ['LoadImageFromFile', 'TestTimeAug']
    flips = steps[1]['transforms'][1]
    assert [(f['prob'], f['direction']) for f in flips] == [(0., 'horizontal'), (1., 'horizontal'), (1., 'vertical')]


def test_config_without_tta_stops_with_a_message():
    cfg = load_config(DET_DEMO)
    with pytest.raises(SystemExit, match='--tta needs tta_model and tta_pipeline'):
        enable_tta(cfg)
