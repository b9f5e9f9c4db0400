"""Selective scan (Mamba's S6) and VMamba's SS2D cross-scan / cross-merge in plain PyTorch.

The specification, the CPU path and the test oracle. Semantics follow mamba_ssm's ``selective_scan_fn``:
for every channel d of group k = d // (KD / K) and state n,

    delta_t = softplus(delta_t + delta_bias)          (if delta_softplus)
    h_t     = exp(delta_t * A[d, n]) * h_(t-1) + delta_t * B[k, n, t] * u_t
    y_t     = sum_n C[k, n, t] * h_t + D[d] * u_t

Shapes: u, delta (B, KD, L); A (KD, N); B, C (B, K, N, L); D, delta_bias (KD,). The output is float32.

SS2D reads a (B, D, H, W) map along four paths: rows (0), columns (1), and both reversed (2, 3); see
:func:`ss2d_paths_reference` for the layout.
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


def ss2d_paths_reference(xs, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """VMamba's four SS2D paths over two sequences: (B, 4D, L) float32.

    ``xs`` (B, 2, D, L) holds the map's rows and columns (row-major and column-major flattening). Path k scans
    ``xs[:, k % 2]``, from the start for k < 2 and from the end for k >= 2. delta (B, 4D, L), B, C (B, 4, N, L)
    and the output are stored in the order of each path's sequence, not in its scan order, so a reversed path
    needs no reversed copies. Here the reversed paths are flipped around the plain scan; the kernels walk them
    backwards instead.
    """
    d = xs.shape[2]
    if xs.shape[1] != 2 or B.shape[1] != 4 or delta.shape[1] != 4 * d:
        raise ValueError(f'SS2D paths need xs (B, 2, D, L), delta (B, 4D, L), B and C (B, 4, N, L); got xs '
                         f'{tuple(xs.shape)}, delta {tuple(delta.shape)}, B {tuple(B.shape)}')

    def scan_order(t, split):
        return torch.cat([t[:, :split], t[:, split:].flip(-1)], dim=1)

    u = torch.cat([xs, xs.flip(-1)], dim=1).flatten(1, 2)
    y = selective_scan_reference(u, scan_order(delta, 2 * d), A, scan_order(B, 2), scan_order(C, 2), D,
                                 delta_bias, delta_softplus)
    return scan_order(y, 2 * d)
