"""Trace ops' forward and backward as torch.compile does (AOTAutograd, functionalized, fake tensors) with the
kernels traced for an H100, on a machine without a GPU; print what the graphs do with the arrival counters.

Run as a script with TRITON_INTERPRET unset (``python tests/test_kernels/trace_for_gpu.py``): the stand-in driver
of compile_for_gpu.py lets wrap_triton analyse the kernels (which arguments they write) without a device, and
nothing runs. Traces LayerNorm, the depthwise conv, LayerNorm again and a compiled product (cast_products.py, its
bias gradient by the column-sum kernel), whose backward launches all use counters, and prints one JSON line per
graph: the int32 zero tensors it makes, whether each launch's counters are what the previous launch left (one
chain, which Inductor updates in place), and the launches that write one tensor through two arguments (Inductor
copies it first).
"""
import json
import operator

import torch
from functorch.compile import aot_function, make_boxed_func
from torch._higher_order_ops.triton_kernel_wrap import triton_kernel_wrapper_functional
from torch._subclasses.fake_tensor import FakeTensorMode
from triton.runtime import driver

from compile_for_gpu import StandInDriver


def counter_use(graph: torch.fx.GraphModule) -> dict:
    """{'int32_zeros': zero tensors made, 'counter_launches': launches taking counters, 'chained': whether each
    such launch after the first takes the counters the one before returned, 'writes_one_tensor_twice': launches
    that do}."""
    zeros = [n for n in graph.graph.nodes
             if n.target in (torch.ops.aten.zeros.default, torch.ops.aten.full.default)
             and n.kwargs.get('dtype') == torch.int32]
    launches = [n for n in graph.graph.nodes
                if n.target is triton_kernel_wrapper_functional and 'counter_ptr' in n.kwargs['kwargs']]
    chained = all(
        getattr(n.kwargs['kwargs']['counter_ptr'], 'target', None) is operator.getitem
        and n.kwargs['kwargs']['counter_ptr'].args == (previous, 'counter_ptr')
        for previous, n in zip(launches, launches[1:]))
    written = [[n.kwargs['kwargs'][name] for name in n.kwargs['tensors_to_clone']] for n in graph.graph.nodes
               if n.target is triton_kernel_wrapper_functional]
    return dict(int32_zeros=len(zeros), counter_launches=len(launches), chained=chained,
                writes_one_tensor_twice=sum(len(set(tensors)) < len(tensors) for tensors in written))


def main():
    driver.set_active(StandInDriver())
    from mlla_dense.kernels.depthwise_conv.op import depthwise_conv_op
    from mlla_dense.kernels.layer_norm.op import layer_norm_op
    from mlla_dense.models.layers.cast_products import cast_all, cast_product

    def layers(x, weight, bias, conv_weight, conv_bias, linear_weight, linear_bias):
        y = layer_norm_op.forward_op(x, weight, bias, 1e-5, torch.bfloat16)[0]
        y = depthwise_conv_op.forward_op(y, conv_weight, conv_bias, 5, 6, True, False)[0]
        y = layer_norm_op.forward_op(y, weight, bias, 1e-5, torch.bfloat16)[0]
        return cast_product(y, [linear_weight], [linear_bias], *cast_all([linear_weight, linear_bias],
                                                                        torch.bfloat16))

    graphs = []

    def keep(graph, example_inputs):
        graphs.append(graph)
        return make_boxed_func(graph.forward)

    from mlla_dense.kernels import backend
    backend._INTERPRETER = True  # lets the triton backend take CPU tensors: here they are only traced
    with FakeTensorMode(), backend.forced_backend('triton'):
        shapes = ((2, 30, 64), (64,), (64,), (64, 1, 3, 3), (64,), (96, 64), (96,))
        inputs = [torch.randn(*shape, dtype=torch.bfloat16 if i in (0, 3, 4) else torch.float32,
                              requires_grad=True) for i, shape in enumerate(shapes)]
        aot_function(layers, fw_compiler=keep, bw_compiler=keep)(*inputs).sum().backward()
    for name, graph in zip(('forward', 'backward'), graphs):
        print(json.dumps(dict(graph=name, **counter_use(graph))), flush=True)


if __name__ == '__main__':
    main()
