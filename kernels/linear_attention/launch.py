"""Launch-size choices and small launch helpers shared by the forward and backward passes."""
import torch
import triton

from .common import sum_chunks_kernel

# Tokens per tile and warps per program, measured on an H100 (tools/benchmark_kernels.py).
TILE = dict(BLOCK_N=64, num_warps=4)


def launch_config(head_dim: int) -> dict:
    """Meta-parameters of every kernel launch: token tile and channel tile width (tl.dot needs >= 16);
    one pipeline stage for wide heads, whose staged tiles would not fit in shared memory."""
    block_d = max(16, triton.next_power_of_2(head_dim))
    return dict(TILE, BLOCK_D=block_d, num_stages=1 if block_d > 64 else 2)


def chunking(n_tokens: int, n_programs_per_chunk: int, device):
    """Split N tokens into chunks (multiples of the token tile) so that a chunked grid fills the device.

    Returns (num_chunks, tokens_per_chunk). Aims for ~2 programs per SM on CUDA; a few chunks on CPU.
    """
    if device.type == 'cuda':
        target = 2 * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        target = 4
    block_n = TILE['BLOCK_N']
    max_chunks = triton.cdiv(n_tokens, block_n)
    num_chunks = max(1, min(max_chunks, triton.cdiv(target, n_programs_per_chunk)))
    tokens_per_chunk = triton.cdiv(triton.cdiv(n_tokens, num_chunks), block_n) * block_n
    return triton.cdiv(n_tokens, tokens_per_chunk), tokens_per_chunk


def sum_chunks(part: torch.Tensor, scale: float) -> torch.Tensor:
    """(chunks, R, ROW) float32 partials -> (R, ROW) = scale * sum over chunks, in one launch."""
    num_chunks, rows, row = part.shape
    out = torch.empty((rows, row), dtype=torch.float32, device=part.device)
    block = min(256, triton.next_power_of_2(row))
    sum_chunks_kernel[(rows, triton.cdiv(row, block))](part, out, num_chunks, row, scale, BLOCK_C=16, BLOCK=block)
    return out


def precision(*tensors) -> str:
    """tl.dot input precision: full fp32 for fp32 inputs, tf32 (ample for 16-bit inputs) otherwise."""
    return 'ieee' if all(t.dtype == torch.float32 for t in tensors) else 'tf32'
