"""How the chunked passes split the tokens: each program sums one chunk of tokens into a partial result, and the
partials are reduced afterwards in a fixed order (deterministic, no atomics)."""
import functools

import torch
import triton


@functools.lru_cache(maxsize=None)
def _multiprocessors(device_index: int) -> int:
    """SM count of a CUDA device (a driver query: cached, as the chunked passes ask on every launch)."""
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def chunking(n_tokens: int, n_rows: int, device, programs_per_sm: int, block_n: int):
    """Split N tokens into chunks (multiples of the token tile) so that a chunked grid of ``n_rows`` rows
    fills the device with ~``programs_per_sm`` programs per SM (a few chunks on CPU).

    Returns (num_chunks, tokens_per_chunk).
    """
    if device.type == 'cuda':
        index = device.index if device.index is not None else torch.cuda.current_device()
        target = programs_per_sm * _multiprocessors(index)
    else:
        target = 4
    max_chunks = triton.cdiv(n_tokens, block_n)
    num_chunks = max(1, min(max_chunks, triton.cdiv(target, n_rows)))
    tokens_per_chunk = triton.cdiv(triton.cdiv(n_tokens, num_chunks), block_n) * block_n
    return triton.cdiv(n_tokens, tokens_per_chunk), tokens_per_chunk
