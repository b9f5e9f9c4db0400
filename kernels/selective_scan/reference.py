"""Selective scan (Mamba's S6) and VMamba's SS2D cross-scan / cross-merge in plain PyTorch.

The specification, the CPU path and the test oracle. Semantics follow mamba_ssm's ``selective_scan_fn``:
for every channel d of group k = d // (KD / K) and state n,

    delta_t = softplus(delta_t + delta_bias)          (if delta_softplus)
    h_t     = exp(delta_t * A[d, n]) * h_(t-1) + delta_t * B[k, n, t] * u_t
    y_t     = sum_n C[k, n, t] * h_t + D[d] * u_t

Shapes: u, delta (B, KD, L); A (KD, N); B, C (B, K, N, L); D, delta_bias (KD,). The output is float32.

SS2D reads a (B, D, H, W) map along four paths: rows (0), columns (1), and both reversed (2, 3);
``cross_scan`` stacks the four sequences as (B, 4, D, H*W), ``cross_merge`` maps four outputs back onto the
grid and sums them.
"""
import torch
import torch.nn.functional as F


def selective_scan_reference(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """(B, KD, L) float32 output of the selective scan (sequential over L, in float32 or float64)."""
    batch, kd, length = u.shape
    groups, n_state = B.shape[1], B.shape[2]
    if kd % groups or A.shape != (kd, n_state) or C.shape != B.shape or delta.shape != u.shape:
        raise ValueError(f'selective scan shapes do not fit: u {tuple(u.shape)}, delta {tuple(delta.shape)}, '
                         f'A {tuple(A.shape)}, B {tuple(B.shape)}, C {tuple(C.shape)}')
    compute = torch.float64 if u.dtype == torch.float64 else torch.float32
    u, delta, A, B, C = (t.to(compute) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    per_group = kd // groups
    B = B.repeat_interleave(per_group, dim=1)      # (B, KD, N, L)
    C = C.repeat_interleave(per_group, dim=1)
    decay = torch.exp(delta[:, :, None, :] * A[None, :, :, None])     # (B, KD, N, L)
    inject = (delta * u)[:, :, None, :] * B
    h = u.new_zeros(batch, kd, n_state)
    ys = []
    for t in range(length):
        h = decay[..., t] * h + inject[..., t]
        ys.append((h * C[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D.to(compute)[:, None]
    return y if compute == torch.float64 else y.float()


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) -> (B, 4, D, H*W): row-major, column-major, and both reversed."""
    rows = x.flatten(2)
    cols = x.transpose(2, 3).flatten(2)
    forward = torch.stack([rows, cols], dim=1)
    return torch.cat([forward, forward.flip(-1)], dim=1)


def cross_merge(y: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 4, D, H*W) outputs of the four paths -> (B, D, H*W) summed on the grid (row-major)."""
    b, _, d, length = y.shape
    y = y[:, :2] + y[:, 2:].flip(-1)
    cols = y[:, 1].reshape(b, d, width, height).transpose(2, 3).reshape(b, d, length)
    return y[:, 0] + cols
