"""Models of mlla_dense; importing this registers the backbones and the RoI extractor."""
from .backbones import *  # noqa: F401,F403
from .roi_heads import *  # noqa: F401,F403
