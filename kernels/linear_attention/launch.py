"""Launch-size and precision choices shared by the forward and backward passes."""
import torch
import triton


def chunking(n_tokens: int, n_programs_per_chunk: int, block_n: int, device):
    """Split N tokens into chunks (multiples of block_n) so that the reduction grid fills the device.

    Returns (num_chunks, tokens_per_chunk). Aims for ~4 programs per SM on CUDA; a few chunks on CPU.
    """
    if device.type == 'cuda':
        target = 4 * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        target = 4
    max_chunks = triton.cdiv(n_tokens, block_n)
    num_chunks = max(1, min(max_chunks, triton.cdiv(target, n_programs_per_chunk)))
    tokens_per_chunk = triton.cdiv(triton.cdiv(n_tokens, num_chunks), block_n) * block_n
    return triton.cdiv(n_tokens, tokens_per_chunk), tokens_per_chunk


def precision(*tensors) -> str:
    """tl.dot input precision: full fp32 for fp32 inputs, tf32 (ample for 16-bit inputs) otherwise."""
    return 'ieee' if all(t.dtype == torch.float32 for t in tensors) else 'tf32'
