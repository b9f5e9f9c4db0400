"""Conv2d -> optional BatchNorm -> optional activation, with the official MLLA parameter names."""
import torch.nn.functional as F
from torch import nn


class ConvBNAct(nn.Module):
    """``conv`` then ``norm`` (BatchNorm2d, if ``norm``) then ``act`` (if ``act``).

    The attribute names match the official ``ConvLayer``, so checkpoints load as they are.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 0, groups: int = 1, bias: bool = True, norm: bool = True, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                              groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(out_channels) if norm else None
        self.act = nn.ReLU() if act else None

    def forward(self, x, weight=None, bias=None):
        """With ``weight`` and ``bias`` in place of the conv's own where given (their autocast casts, see
        weight_casts.py)."""
        conv = self.conv
        x = F.conv2d(x, conv.weight if weight is None else weight, conv.bias if bias is None else bias, conv.stride,
                     conv.padding, conv.dilation, conv.groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x
