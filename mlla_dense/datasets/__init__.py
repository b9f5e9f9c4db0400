"""The synthetic shapes dataset (generator; the configs read it as a COCO / semantic-map dataset)."""
from .shapes import CATEGORIES, ShapesConfig, render_sample, write_shapes_dataset

__all__ = ['CATEGORIES', 'ShapesConfig', 'render_sample', 'write_shapes_dataset']
