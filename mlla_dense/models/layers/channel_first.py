"""Layers on channel-first maps (B, C, H, W) with the parameter names of nn.LayerNorm / nn.Linear, as VMamba
uses them (its released dense models run channel-first, "ln2d")."""
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class Linear2d(nn.Linear):
    """A Linear layer applied to the channels of a (B, C, H, W) map (a 1x1 convolution); its weight keeps the
    Linear shape (out, in), so checkpoints of either form load."""

    def forward(self, x):
        return F.conv2d(x, self.weight[:, :, None, None], self.bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + 'weight'
        if key in state_dict and state_dict[key].dim() == 4:
            state_dict[key] = state_dict[key].flatten(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
