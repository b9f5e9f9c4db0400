"""Registered backbones."""
from .mlla import MLLA

__all__ = ['MLLA']
