"""Linear CKA (centered kernel alignment; Kornblith et al., 2019) between token features.

CKA compares two representations of the same inputs by the similarity structure they induce, so it is
invariant to rotations and isotropic scaling of either feature space and needs no common width: the
features of one encoder block at R=64 and at R=256 can be compared even though their token grids differ,
once the grids are resized to a common size (:func:`grid_cka`). 1 means the same geometry; shuffling
which token is which destroys the alignment and drives it towards 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """CKA of two feature matrices with one row per sample: x n×p, y n×q (computed in float64).

    ``||Yᶜᵀ Xᶜ||²_F / (||Xᶜᵀ Xᶜ||_F · ||Yᶜᵀ Yᶜ||_F)`` with column-centred Xᶜ, Yᶜ; 0 when either is constant.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"Expected two n×p and n×q feature matrices with the same n, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}.")
    x = x.double() - x.double().mean(dim=0, keepdim=True)
    y = y.double() - y.double().mean(dim=0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norm = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norm) if norm > 0 else 0.0


def resize_grid(features: torch.Tensor, size: int) -> torch.Tensor:
    """B×h×w×C token features → B×size×size×C: area averaging when shrinking, bilinear when enlarging."""
    if features.dim() != 4:
        raise ValueError(f"Expected B×h×w×C token features, got {tuple(features.shape)}.")
    if features.shape[1:3] == (size, size):
        return features
    grid = features.permute(0, 3, 1, 2).float()
    if size <= min(features.shape[1:3]):
        grid = F.adaptive_avg_pool2d(grid, size)
    else:
        grid = F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)
    return grid.permute(0, 2, 3, 1)


def grid_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA of two B×h×w×C token grids of the same B images, both resized to the smaller grid
    (downsampling the finer one averages its tokens instead of inventing tokens for the coarser one)."""
    if a.dim() != 4 or b.dim() != 4 or a.shape[0] != b.shape[0]:
        raise ValueError(f"Expected two B×h×w×C token grids of the same B images, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}.")
    size = min(a.shape[1], a.shape[2], b.shape[1], b.shape[2])
    return linear_cka(resize_grid(a, size).reshape(-1, a.shape[-1]), resize_grid(b, size).reshape(-1, b.shape[-1]))
