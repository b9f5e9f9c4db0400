"""The Triton linear attention as a :class:`~mlla_dense.kernels.kernel_op.KernelOp`. The forward saves only its
inputs plus ``stats``: the per-head kv (block-diagonal matrices of head groups) and mean(phi(k))."""
from typing import Optional, Tuple

from torch import Tensor

from ..kernel_op import KernelOp, Plans
from ..strides import unit_last_stride
from .backward import BackwardPlan, linear_attention_backward
from .forward import ForwardPlan, linear_attention_forward
from .reference import check_inputs


def _forward_plan(qk, v, lepe_weight, lepe_bias, height, width, num_heads):
    check_inputs(qk, v, (height, width), num_heads, lepe_weight, lepe_bias)
    return ForwardPlan(qk, v, lepe_weight, lepe_bias, height, width, num_heads)


_forward_plans = Plans(_forward_plan)
_backward_plans = Plans(BackwardPlan)


def forward(qk: Tensor, v: Tensor, lepe_weight: Tensor, lepe_bias: Tensor, height: int, width: int,
            num_heads: int) -> Tuple[Tensor, Tensor]:
    """(out (B, N, C), stats)."""
    return forward_reading(None, qk, v, lepe_weight, lepe_bias, height, width, num_heads)


def backward(grad_out: Tensor, qk: Tensor, v: Tensor, lepe_weight: Tensor, stats: Tensor, height: int, width: int,
             num_heads: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """(d qk, d v, d lepe weight, d lepe bias)."""
    return backward_reading(None, grad_out, qk, v, lepe_weight, stats, height, width, num_heads)


def forward_reading(tables: Optional[Tuple[Tensor, Tensor]], qk, v, lepe_weight, lepe_bias, height, width,
                    num_heads) -> Tuple[Tensor, Tensor]:
    """:func:`forward` reading the given RoPE tables (rope.build_rope_tables in rope.table_dtype of the inputs'
    dtype), or the cached ones for None."""
    qk, v = unit_last_stride(qk), unit_last_stride(v)
    plan = _forward_plans((qk, v, lepe_weight, lepe_bias), (height, width, num_heads))
    return linear_attention_forward(plan, qk, v, lepe_weight, lepe_bias, tables)


def backward_reading(tables: Optional[Tuple[Tensor, Tensor]], grad_out, qk, v, lepe_weight, stats, height, width,
                     num_heads) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`backward` reading the given RoPE tables, as :func:`forward_reading`."""
    grad_out = unit_last_stride(grad_out)
    plan = _backward_plans((grad_out, qk, v, lepe_weight, stats), (height, width, num_heads))
    return linear_attention_backward(plan, grad_out, qk, v, lepe_weight, stats, tables)


linear_attention_op = KernelOp('linear_attention', forward, backward, save=('qk', 'v', 'lepe_weight'),
                               grads_for=('qk', 'v', 'lepe_weight', 'lepe_bias'),
                               options=('height', 'width', 'num_heads'))


def forward_with_tables(qk: Tensor, v: Tensor, lepe_weight: Tensor, lepe_bias: Tensor, rope_cos: Tensor,
                        rope_sin: Tensor, height: int, width: int, num_heads: int) -> Tuple[Tensor, Tensor]:
    """:func:`forward` on RoPE tables the caller built (once for several calls under torch.compile, where the
    op's own tables would be built anew in each call's traced forward and backward)."""
    return forward_reading((rope_cos, rope_sin), qk, v, lepe_weight, lepe_bias, height, width, num_heads)


def backward_with_tables(grad_out: Tensor, qk: Tensor, v: Tensor, lepe_weight: Tensor, rope_cos: Tensor,
                         rope_sin: Tensor, stats: Tensor, height: int, width: int,
                         num_heads: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    return backward_reading((rope_cos, rope_sin), grad_out, qk, v, lepe_weight, stats, height, width, num_heads)


linear_attention_with_tables_op = KernelOp(
    'linear_attention_with_tables', forward_with_tables, backward_with_tables,
    save=('qk', 'v', 'lepe_weight', 'rope_cos', 'rope_sin'), grads_for=('qk', 'v', 'lepe_weight', 'lepe_bias'),
    options=('height', 'width', 'num_heads'))
