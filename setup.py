"""mlla_dense: MLLA and VMamba backbones with Triton kernels for mmdet 3.x and mmsegmentation 1.x.

The Triton kernels live in the top-level folder ``kernels/`` and install as ``mlla_dense.kernels``.
"""
from pathlib import Path

from setuptools import find_packages, setup


def requirements(name):
    lines = Path(__file__).parent.joinpath('requirements', name).read_text().splitlines()
    return [line.split('#')[0].strip() for line in lines if line.split('#')[0].strip()]


kernel_packages = ['mlla_dense.kernels'] + [f'mlla_dense.kernels.{p}' for p in find_packages('kernels')]

setup(
    name='mlla_dense',
    version='0.1.0',
    description='MLLA and VMamba backbones with Triton kernels for mmdet and mmsegmentation',
    long_description=Path(__file__).parent.joinpath('README.md').read_text(),
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    packages=find_packages(include=['mlla_dense', 'mlla_dense.*']) + kernel_packages,
    package_dir={'mlla_dense.kernels': 'kernels'},
    install_requires=requirements('runtime.txt'),
    extras_require={'tests': requirements('tests.txt')},
    license='MIT',
)
