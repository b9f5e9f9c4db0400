"""Data preprocessors for mmdet; importing this registers them."""
from .bucketed_det_data_preprocessor import BucketedDetDataPreprocessor, bucket_shape

__all__ = ['BucketedDetDataPreprocessor', 'bucket_shape']
