"""Models of mlla_dense; importing this registers the backbones."""
from .backbones import *  # noqa: F401,F403
