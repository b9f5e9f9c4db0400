"""Conv2d -> optional BatchNorm -> optional activation, with the official MLLA parameter names."""
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

    def forward(self, x):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x
