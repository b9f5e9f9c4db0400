"""The one layout requirement the kernels share: unit stride along the last dim (any other strides are passed
to the kernels as they are)."""
from torch import Tensor


def unit_last_stride(t: Tensor) -> Tensor:
    """``t`` itself when its last dim is contiguous, else a contiguous copy."""
    return t if t.stride(-1) == 1 else t.contiguous()
