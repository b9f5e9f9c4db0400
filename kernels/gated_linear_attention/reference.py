"""Gated linear attention in plain PyTorch: the specification, the CPU path and the test oracle.

Per batch element and head, over the tokens in scan order t = 1..N, with a_t = exp(log_decay_t) (one value per
head, or one per key channel) and the states S_0 = 0 (K x V), s_0 = 0 (K)::

    S_t = diag(a_t) S_(t-1) + k_t^T v_t        s_t = a_t * s_(t-1) + k_t
    o_t = q_t S_t                              z_t = q_t . s_t

o is the gated linear attention's numerator, z its normalizer (o / z is the normalized attention). A scan
direction orders the tokens of a row-major H x W grid: 'rows' (token order), 'columns' (column by column),
each also '_reversed'; several directions add up (VMamba's SS2D scans all four).

Computed in chunks of ``CHUNK`` tokens, as the kernels do: inside a chunk the products are exact matrices
(with the decays as exp of differences of cumulative log decays, never above 1); between chunks the states
pass through a log-depth scan. No Python loop over tokens or chunks, so torch.compile and the FLOP counter
trace it. float64 inputs are computed in float64, others in float32; o and z are returned in float32 (float64).
"""
import torch

DIRECTIONS = ('rows', 'rows_reversed', 'columns', 'columns_reversed')
# Tokens per chunk: one decay per head makes (T, T) intra-chunk matrices, one per key channel (T, T, K) ones.
CHUNK = {'head': 64, 'channel': 16}


def check_inputs(q, k, v, log_decay, directions, grid):
    """Validate shapes; returns (B, N, H, K, V, per_channel)."""
    if q.dim() != 4 or k.shape != q.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f'q and k must be (B, N, H, K) and v (B, N, H, V), got q {tuple(q.shape)}, '
                         f'k {tuple(k.shape)}, v {tuple(v.shape)}')
    b, n, h, dk = q.shape
    if log_decay.shape not in ((b, n, h), (b, n, h, dk)):
        raise ValueError(f'log_decay must be (B, N, H) = {(b, n, h)} (one decay per head) or (B, N, H, K) = '
                         f'{(b, n, h, dk)} (one per key channel), got {tuple(log_decay.shape)}')
    if not directions or any(d not in DIRECTIONS for d in directions):
        raise ValueError(f'directions must be a non-empty sequence of {", ".join(DIRECTIONS)}; got {directions}')
    if any(d.startswith('columns') for d in directions):
        if grid is None or grid[0] * grid[1] != n:
            raise ValueError(f"column scans need the token grid (H, W) with H * W = {n}, got grid={grid}")
    return b, n, h, dk, v.shape[-1], log_decay.dim() == 4


def scan_order(direction: str, n: int, grid, device) -> torch.Tensor:
    """Token index of each scan position (a permutation of 0..N-1)."""
    order = torch.arange(n, device=device)
    if direction.startswith('columns'):
        order = order.view(grid).t().reshape(-1)
    return order.flip(0) if direction.endswith('reversed') else order


def _chunked(x: torch.Tensor, chunk: int) -> torch.Tensor:
    """(B, N, H, ...) -> (B, H, N / T, T, ...), zero-padded to whole chunks (a zero log decay keeps the state)."""
    b, n = x.shape[:2]
    pad = -n % chunk
    if pad:
        x = torch.cat([x, x.new_zeros((b, pad) + x.shape[2:])], dim=1)
    x = x.view(b, (n + pad) // chunk, chunk, *x.shape[2:])
    return x.movedim(3, 1)


def _states_before_chunks(decay: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """States entering each chunk, from chunk-local states (B, H, C, ...) and chunk decays (broadcastable):
    x_c = decay_c x_(c-1) + local_c scanned in log2(C) doubling steps (Hillis-Steele), then shifted by one."""
    num = local.shape[2]
    offset = 1
    while offset < num:
        local = torch.cat([local[:, :, :offset], local[:, :, offset:] + decay[:, :, offset:] * local[:, :, :-offset]],
                          dim=2)
        decay = torch.cat([decay[:, :, :offset], decay[:, :, offset:] * decay[:, :, :-offset]], dim=2)
        offset *= 2
    return torch.cat([torch.zeros_like(local[:, :, :1]), local[:, :, :-1]], dim=2)


def _one_direction(q, k, v, g):
    """(o, z) in scan order for inputs already in scan order, in the compute dtype."""
    n = q.shape[1]
    per_channel = g.dim() == 4
    chunk = CHUNK['channel' if per_channel else 'head']
    q, k, v, g = (_chunked(t, chunk) for t in (q, k, v, g))     # (B, H, C, T, ...)
    cum = g.cumsum(3)                                           # log decay from the chunk start through t
    total = cum[:, :, :, -1:]                                   # of the whole chunk
    if not per_channel:
        cum, total = cum[..., None], total[..., None]           # broadcast over the key channels
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    if per_channel:
        diff = cum[:, :, :, :, None, :] - cum[:, :, :, None, :, :]           # (B, H, C, T, T, K)
        weights = torch.exp(diff.masked_fill(~causal[:, :, None], float('-inf')))
        attn = torch.einsum('bhcik,bhcjk,bhcijk->bhcij', q, k, weights)
    else:
        diff = cum[..., 0][..., :, None] - cum[..., 0][..., None, :]        # (B, H, C, T, T)
        attn = q @ k.transpose(-1, -2) * torch.exp(diff.masked_fill(~causal, float('-inf')))
    k_to_end = k * torch.exp(total - cum)                       # k_j decayed to the end of its chunk
    state = _states_before_chunks(torch.exp(total).transpose(-1, -2), k_to_end.transpose(-1, -2) @ v)
    norm_state = _states_before_chunks(torch.exp(total[:, :, :, 0]), k_to_end.sum(3))
    q_from_start = q * torch.exp(cum)                           # q_i with the decay since the chunk start
    o = attn @ v + q_from_start @ state
    z = attn.sum(-1) + (q_from_start * norm_state[:, :, :, None]).sum(-1)
    b = o.shape[0]
    return (o.movedim(1, 3).reshape(b, -1, *o.shape[1:2], o.shape[-1])[:, :n],
            z.movedim(1, 3).reshape(b, -1, z.shape[1])[:, :n])


def gated_linear_attention_reference(q, k, v, log_decay, directions=('rows',), grid=None):
    """Gated linear attention summed over scan ``directions``: (o (B, N, H, V), z (B, N, H)), float32/float64.

    Args:
        q, k: (B, N, H, K) queries and keys (the feature map already applied).
        v: (B, N, H, V) values.
        log_decay: (B, N, H) or (B, N, H, K), log a_t <= 0 (a_t = 1 keeps the state, 0 forgets it).
        directions: scan directions (see the module docstring), their results add up.
        grid: (H, W) of the row-major token grid; needed by column scans.
    """
    check_inputs(q, k, v, log_decay, directions, grid)
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v, log_decay = (t.to(compute) for t in (q, k, v, log_decay))
    o = z = 0
    for direction in directions:
        order = scan_order(direction, q.shape[1], grid, q.device)
        o_scan, z_scan = _one_direction(q[:, order], k[:, order], v[:, order], log_decay[:, order])
        inverse = torch.argsort(order)
        o, z = o + o_scan[:, inverse], z + z_scan[:, inverse]
    return o, z
