"""Checkpoint loading, FLOPs counting and torch/mmengine compatibility."""
