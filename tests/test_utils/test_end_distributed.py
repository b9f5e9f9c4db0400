"""end_distributed: tools/train.py and tools/test.py destroy the process group before the interpreter exits."""
import torch.distributed as dist

from mlla_dense.utils.run_config import end_distributed


def test_destroys_the_default_group(tmp_path):
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    try:
        assert dist.is_initialized()
        end_distributed()
        assert not dist.is_initialized()
    finally:  # the rest of this worker's tests run without a group, whatever happened here
        if dist.is_initialized():
            dist.destroy_process_group()


def test_without_a_group_does_nothing():
    assert not dist.is_initialized()
    end_distributed()
    assert not dist.is_initialized()
