"""Host microseconds per call of each Triton op, in isolation: what one call costs the CPU (launch plan lookup,
allocations, launches), beside single PyTorch ops on the same host.

Each op's ``forward`` and ``backward`` are called back to back, as the fused blocks call them, on small tensors
(so the GPU keeps up and the host sets the pace); the time per call is the best of ``--rounds`` rounds of
``--calls`` calls, divided by the calls. The PyTorch rows (``F.layer_norm``, a depthwise ``F.conv2d``, ``F.linear``,
``torch.empty``) run on the same tensors: the cost of a single PyTorch op on this host, for scale. In-model host
times (tools/profile_backbone.py) are higher: there the caching allocator works on a full pool and the CPU's
caches are cold between ops.

    python tools/host_cost.py --out benchmarks/results        # on the GPU machine
    TRITON_INTERPRET=1 python tools/host_cost.py --smoke      # on CPU: checks the tool, measures nothing useful
"""
import argparse
import os
import time

import torch
import torch.nn.functional as F

from mlla_dense.kernels.depthwise_conv.op import depthwise_conv_op
from mlla_dense.kernels.layer_norm.op import layer_norm_op
from mlla_dense.kernels.linear_attention.op import linear_attention_op
from mlla_dense.kernels.selective_scan.op import selective_scan_op
from mlla_dense.utils.benchmarking import print_table, run_info, write_json


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--calls', type=int, default=2000, help='calls per round')
    parser.add_argument('--rounds', type=int, default=3, help='rounds; the fastest counts')
    parser.add_argument('--out', default=None, help='folder for host_cost.json (none: print only)')
    parser.add_argument('--smoke', action='store_true', help='a few calls on any device, to check the tool')
    return parser.parse_args()


def op_inputs(device, smoke):
    """{op: forward inputs} at small shapes: 2 x 16 x 16 tokens of 64 channels (bf16 activations, float32
    parameters, as under autocast); the scan: VMamba's four paths over 2 sequences of 96 channels. Tinier ones
    with ``smoke`` (the Triton interpreter is slow)."""
    gen = torch.Generator(device=device).manual_seed(0)

    def randn(*size, dtype=torch.bfloat16, scale=1.0):
        return (scale * torch.randn(*size, device=device, generator=gen)).to(dtype)

    b, h, w, c, d = (1, 3, 4, 32, 8) if smoke else (2, 16, 16, 64, 96)
    length = h * w
    fp32 = torch.float32
    return {
        layer_norm_op: (randn(b, h * w, c), randn(c, dtype=fp32), randn(c, dtype=fp32), 1e-5, torch.bfloat16),
        depthwise_conv_op: (randn(b, h * w, c), randn(c, 1, 3, 3, dtype=fp32, scale=0.3).to(torch.bfloat16),
                            randn(c, dtype=torch.bfloat16), h, w, False, True),
        linear_attention_op: (randn(b, h * w, 2 * c), randn(b, h * w, c), randn(c, 1, 3, 3, dtype=fp32, scale=0.3),
                              randn(c, dtype=fp32), h, w, 2),
        selective_scan_op: (randn(b, 2, d, length), randn(b, 4 * d, length, scale=0.5),
                            -torch.exp(randn(4 * d, 1, dtype=fp32, scale=0.5)), randn(b, 4, 1, length),
                            randn(b, 4, 1, length), randn(4 * d, dtype=fp32), randn(4 * d, dtype=fp32, scale=0.3),
                            True, 2),
    }


def backward_args(op, inputs, outputs):
    """The op's backward arguments after ``op.forward(*inputs)`` returned ``outputs`` (see kernels/kernel_op.py)."""
    out, *residuals = outputs
    saved = [inputs[i] for i in op.save_index]
    options = [inputs[i] for i in op.option_index]
    return (torch.randn_like(out), *saved, *residuals, *options)


def host_us(fn, calls, rounds, cuda) -> float:
    """Host microseconds per call of ``fn()``: the fastest of ``rounds`` rounds of ``calls`` back-to-back calls
    (the device is synchronized between rounds, not inside them)."""
    for _ in range(3):
        fn()
    best = float('inf')
    for _ in range(rounds):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - start)
    if cuda:
        torch.cuda.synchronize()
    return 1e6 * best / calls


def main():
    args = parse_args()
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        raise SystemExit('host_cost.py measures on a CUDA device; on CPU only --smoke runs (with TRITON_INTERPRET=1)')
    device = 'cuda' if cuda else 'cpu'
    calls, rounds = (2, 1) if args.smoke else (args.calls, args.rounds)
    rows = []
    with torch.no_grad():
        for op, inputs in op_inputs(device, args.smoke).items():
            outputs = op.forward(*inputs)
            grads = backward_args(op, inputs, outputs)
            rows.append(dict(call=f'{op.name} forward', us=host_us(lambda: op.forward(*inputs), calls, rounds, cuda)))
            rows.append(dict(call=f'{op.name} backward',
                             us=host_us(lambda: op.backward(*grads), calls, rounds, cuda)))
        x, weight, _, h, w = op_inputs(device, args.smoke)[depthwise_conv_op][:5]
        c = x.shape[-1]
        norm_weight = op_inputs(device, args.smoke)[layer_norm_op][1].to(x.dtype)
        conv_x = x.view(x.shape[0], h, w, c).permute(0, 3, 1, 2)
        linear_w = torch.randn(c, c, device=device, dtype=x.dtype)
        pytorch = {'F.layer_norm': lambda: F.layer_norm(x, (c,), norm_weight, None),
                   'F.conv2d, depthwise 3x3': lambda: F.conv2d(conv_x, weight, None, 1, 1, 1, c),
                   'F.linear': lambda: F.linear(x, linear_w),
                   'torch.empty': lambda: torch.empty(x.shape, dtype=x.dtype, device=device)}
        for name, fn in pytorch.items():
            rows.append(dict(call=f'PyTorch: {name}', us=host_us(fn, calls, rounds, cuda)))
    for row in rows:
        row['us'] = round(row['us'], 2)
    print_table(rows, ['call', 'us'])
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        write_json(os.path.join(args.out, 'host_cost.json'),
                   dict(run_info(), command='tools/host_cost.py', calls=calls, rounds=rounds, records=rows))


if __name__ == '__main__':
    main()
