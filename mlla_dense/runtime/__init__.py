"""Runtime machinery around the models: how a training step is executed (CUDA graphs), not what it computes."""
