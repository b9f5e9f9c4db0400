"""RoI-head pieces for mmdet; importing this registers them."""
from .float32_roi_extractor import Float32RoIExtractor

__all__ = ['Float32RoIExtractor']
