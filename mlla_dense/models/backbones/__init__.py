"""Registered backbones."""
from .mlla import MLLA
from .vmamba import VMamba

__all__ = ['MLLA', 'VMamba']
