"""The convolutional mixture of experts inside Conv-LoRA's bottleneck.

Each expert works at one scale s: bilinearly upsample the r-channel bottleneck map by s, apply a 3×3
convolution (+ GELU), average-pool back to the original grid. At s = 1 that is a plain 3×3 convolution over
neighbouring tokens; at s > 1 the kernel covers a sub-token neighbourhood, i.e. a finer local prior for
small objects (the paper's motivation: objects of different sizes want the local prior at different
scales). A gate reads the image's mean bottleneck feature and picks the top-k experts per image
(Switch-Transformer style: an expert's output is weighted by its softmax probability, not re-normalised,
so the gate itself gets a gradient even with k = 1); only the chosen experts run for each image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvExpert(nn.Module):
    """Upsample ×scale → 3×3 conv (r → r) → GELU → average-pool back: a local prior at one scale."""

    def __init__(self, channels: int, scale: int):
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return F.gelu(self.conv(grid))
        fine = F.interpolate(grid, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return F.avg_pool2d(F.gelu(self.conv(fine)), kernel_size=self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class ConvMixture(nn.Module):
    """Per-image top-k gated mixture of :class:`ConvExpert` at ``scales``."""

    def __init__(self, channels: int, scales: tuple[int, ...], top_k: int):
        super().__init__()
        self.top_k = top_k
        self.experts = nn.ModuleList(ConvExpert(channels, s) for s in scales)
        self.gate = nn.Linear(channels, len(scales))

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """B×r×H×W → B×r×H×W, the weighted sum of each image's chosen experts."""
        probabilities = self.gate(grid.mean(dim=(2, 3))).softmax(dim=-1)  # B×E
        chosen = probabilities.topk(self.top_k, dim=-1).indices  # B×k
        mixed = torch.zeros_like(grid)
        for index, expert in enumerate(self.experts):
            images = (chosen == index).any(dim=-1).nonzero().flatten()
            if images.numel() == 0:
                continue
            weight = probabilities[images, index].view(-1, 1, 1, 1)
            mixed = mixed.index_add(0, images, weight * expert(grid[images]))
        return mixed

    def extra_repr(self) -> str:
        return f"top_k={self.top_k}"
