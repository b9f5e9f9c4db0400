"""Activation functions for the kernels, as accurate in float32 as PyTorch's CUDA kernels.

Triton's ``tl.exp`` computes 2^(x log2 e) with the product rounded first, so its relative error grows with |x|
(~|x| * 6e-8: tens of ulps at |x| ~ 10), and ``/`` divides approximately. PyTorch's SiLU and GELU use the CUDA
math library's expf (2 ulp) and IEEE division. MLLA's float32 gradients amplify such differences (its
train-mode input gradient doubled its distance from a float64 truth with a SiLU built on ``tl.exp``,
benchmarks/NOTES.md), so the kernels use these instead: exp with a two-part ln 2 range reduction (error of a
few ulps at any x) and correctly rounded division.
"""
import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)
LN2_HI = tl.constexpr(0.693145751953125)       # ln 2 with its low bits cleared: k * LN2_HI is exact for |k| < 2^11
LN2_LO = tl.constexpr(1.4286068203094173e-06)  # ln 2 - LN2_HI


@triton.jit
def accurate_exp(x):
    """e^x: x = k ln 2 + r with |r| <= ln 2 / 2, then 2^(r log2 e) * 2^k."""
    k = tl.floor(x * LOG2E + 0.5)
    r = (x - k * LN2_HI) - k * LN2_LO
    return tl.exp2(r * LOG2E) * tl.exp2(k)


@triton.jit
def sigmoid(x):
    return tl.math.div_rn(1.0, 1.0 + accurate_exp(-x))


@triton.jit
def silu(x):
    return x * sigmoid(x)


@triton.jit
def silu_grad(x):
    """d silu / dx = sigmoid(x) (1 + x (1 - sigmoid(x)))."""
    s = sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


@triton.jit
def gelu(x):
    """Exact GELU, x Phi(x) (nn.GELU's default)."""
    return 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))


@triton.jit
def gelu_grad(x):
    """d gelu / dx = Phi(x) + x phi(x)."""
    cdf = 0.5 * (1.0 + tl.math.erf(x * 0.7071067811865476))
    pdf = 0.3989422804014327 * accurate_exp(-0.5 * x * x)
    return cdf + x * pdf

