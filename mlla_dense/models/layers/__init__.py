"""Building blocks shared by the backbones."""
