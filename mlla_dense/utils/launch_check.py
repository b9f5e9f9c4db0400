"""Check a torchrun launch before starting it: clear errors instead of hangs or CUDA tracebacks.

    python -m mlla_dense.utils.launch_check --nproc 2 --port 29500
"""
import argparse
import os
import socket
import sys

import torch


def launch_problems(nproc: int, port: int, node_rank: int = 0) -> list:
    """What would make a single-node launch of ``nproc`` processes on ``port`` fail, as messages."""
    problems = []
    if nproc < 1:
        problems.append(f'the number of processes must be at least 1, got {nproc}')
    gpus = torch.cuda.device_count()
    if gpus and nproc > gpus:
        problems.append(f'{nproc} processes but only {gpus} GPUs visible (CUDA_VISIBLE_DEVICES='
                        f'{os.environ.get("CUDA_VISIBLE_DEVICES", "unset")}): one process per GPU')
    if not gpus and nproc > (os.cpu_count() or 1):
        problems.append(f'{nproc} CPU processes but only {os.cpu_count()} CPUs: use at most one process per CPU')
    if node_rank == 0:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(('', port))
            except OSError:
                problems.append(f'port {port} is in use: set PORT to a free one, e.g. PORT=29501')
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--nproc', type=int, required=True)
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--node-rank', type=int, default=0)
    args = parser.parse_args()
    problems = launch_problems(args.nproc, args.port, args.node_rank)
    if problems:
        sys.exit('cannot launch: ' + '; '.join(problems))


if __name__ == '__main__':
    main()
