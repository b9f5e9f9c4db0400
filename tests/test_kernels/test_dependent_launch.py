"""When the kernels launch as programmatic dependent launches (kernels/dependent_launch.py)."""
import pytest
from triton.backends.compiler import GPUTarget
from triton.runtime import driver

from mlla_dense.kernels.dependent_launch import dependent_launch


class Target:
    """A driver stand-in that reports one compile target."""

    def __init__(self, target):
        self.target = target

    def get_current_target(self):
        return self.target


@pytest.fixture
def compiled(monkeypatch):
    """Kernels compiled for a device (the interpreter off); returns a setter for the device's target."""
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    monkeypatch.delenv('MLLA_DENSE_DEPENDENT_LAUNCH', raising=False)
    return lambda target: monkeypatch.setattr(driver, '_active', Target(target))


def test_on_hopper_and_later(compiled):
    compiled(GPUTarget('cuda', 90, 32))
    assert dependent_launch() is True
    compiled(GPUTarget('cuda', 100, 32))
    assert dependent_launch() is True


def test_not_before_hopper_nor_elsewhere(compiled):
    compiled(GPUTarget('cuda', 80, 32))
    assert dependent_launch() is False
    compiled(GPUTarget('hip', 'gfx942', 64))
    assert dependent_launch() is False


def test_switched_off(compiled, monkeypatch):
    compiled(GPUTarget('cuda', 90, 32))
    monkeypatch.setenv('MLLA_DENSE_DEPENDENT_LAUNCH', '0')
    assert dependent_launch() is False


def test_never_in_the_interpreter(monkeypatch):
    monkeypatch.setenv('TRITON_INTERPRET', '1')
    assert dependent_launch() is False
