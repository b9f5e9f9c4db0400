"""Registered backbones."""
from .design_space import LinearAttentionDesignSpace
from .mlla import MLLA
from .vmamba import VMamba

__all__ = ['LinearAttentionDesignSpace', 'MLLA', 'VMamba']
