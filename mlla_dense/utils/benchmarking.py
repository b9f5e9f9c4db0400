"""Shared helpers of the GPU benchmarks: timing, device bandwidth, result records and plots."""
import datetime
import json
import os
import shlex
import sys

import torch


def time_ms(fn, warmup=5, rep=20, cuda_graph=False) -> float:
    """Median time of ``fn()`` in milliseconds (CUDA events through triton's do_bench on GPU).

    With ``cuda_graph`` the calls are captured once in a CUDA graph and its replays are timed: the device
    time without the CPU's launch overhead (which dominates for microsecond kernels).
    """
    if torch.cuda.is_available():
        from triton.testing import do_bench
        if cuda_graph:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    fn()
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                fn()
            return do_bench(graph.replay, warmup=warmup, rep=rep, return_mode='median')
        return do_bench(fn, warmup=warmup, rep=rep, return_mode='median')
    import time
    for _ in range(2):
        fn()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def copy_bandwidth_gbs(n_bytes: int = 2 ** 30) -> float:
    """Device-to-device copy bandwidth (bytes read + written per second, in GB/s), measured now."""
    src = torch.empty(n_bytes // 2, dtype=torch.uint8, device='cuda')
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), warmup=10, rep=50)
    return 2 * src.numel() / (ms * 1e-3) / 1e9


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'


def run_info() -> dict:
    """What every results file records besides the numbers."""
    return dict(device=device_name(), date=datetime.date.today().isoformat(), torch=torch.__version__,
                command=' '.join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:]))


def write_json(path: str, payload) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(payload, f, indent=1)
        f.write('\n')


def print_table(rows, columns) -> None:
    """Print a list of dicts as an aligned text table."""
    cells = [[str(r.get(c, '')) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print('  '.join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print('  '.join(v.rjust(w) for v, w in zip(row, widths)))
