"""Deterministic sums of per-program partial results (no atomics): partials (chunks, R, ROW) -> (R, ROW)."""
import torch
import triton
import triton.language as tl


@triton.jit
def sum_chunks_kernel(part_ptr, out_ptr, NUM_CHUNKS, ROW, scale, BLOCK_C: tl.constexpr, BLOCK: tl.constexpr):
    """out[r, i] = scale * sum_c part[c, r, i] over the chunk partials (deterministic order)."""
    r = tl.program_id(0)
    i = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    rows = tl.num_programs(0)
    acc = tl.zeros((BLOCK,), tl.float32)
    for c0 in range(0, NUM_CHUNKS, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        offs = (c[:, None] * rows + r).to(tl.int64) * ROW + i[None, :]
        acc += tl.sum(tl.load(part_ptr + offs, mask=(c[:, None] < NUM_CHUNKS) & (i[None, :] < ROW), other=0.), 0)
    tl.store(out_ptr + r.to(tl.int64) * ROW + i, acc * scale, mask=i < ROW)


def sum_chunks(part: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """(chunks, R, ROW) float32 partials -> (R, ROW) = scale * sum over chunks, in one launch (narrow column
    blocks and up to 128 chunks per step: many short programs, as the sum is latency-bound)."""
    num_chunks, rows, row = part.shape
    out = torch.empty((rows, row), dtype=torch.float32, device=part.device)
    block = min(32, triton.next_power_of_2(row))
    chunks_per_step = min(128, triton.next_power_of_2(num_chunks))
    sum_chunks_kernel[(rows, triton.cdiv(row, block))](part, out, num_chunks, row, scale, BLOCK_C=chunks_per_step,
                                                       BLOCK=block)
    return out


def chunking(n_tokens: int, n_rows: int, device, programs_per_sm: int, block_n: int):
    """Split N tokens into chunks (multiples of the token tile) so that a chunked grid of ``n_rows`` rows
    fills the device with ~``programs_per_sm`` programs per SM (a few chunks on CPU).

    Returns (num_chunks, tokens_per_chunk).
    """
    if device.type == 'cuda':
        target = programs_per_sm * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        target = 4
    max_chunks = triton.cdiv(n_tokens, block_n)
    num_chunks = max(1, min(max_chunks, triton.cdiv(target, n_rows)))
    tokens_per_chunk = triton.cdiv(triton.cdiv(n_tokens, num_chunks), block_n) * block_n
    return triton.cdiv(n_tokens, tokens_per_chunk), tokens_per_chunk
