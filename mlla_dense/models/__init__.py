"""Models of mlla_dense; importing this registers the backbones, the RoI extractor, the decode heads and the data
preprocessor."""
from .backbones import *  # noqa: F401,F403
from .data_preprocessors import *  # noqa: F401,F403
from .decode_heads import *  # noqa: F401,F403
from .roi_heads import *  # noqa: F401,F403
