"""Triton kernels of mlla_dense, installed as ``mlla_dense.kernels``.

One folder per op; each folder's ``__init__`` exports the op's single public function, which runs the Triton
kernels on CUDA tensors and the pure-PyTorch reference otherwise (see :mod:`mlla_dense.kernels.backend`).
"""
