"""The Conv-LoRA update of one fused ``qkv`` linear.

    Δ(x) = (α/r) · B · ( z + MoE(z) ),   z = A·x on the token grid

A (r × in) projects each token to the rank-r bottleneck, the convolutional mixture (:mod:`.mixture`) runs
on the bottleneck *grid* (:mod:`.grid` rebuilds it from the windows qkv sees), and B (rows × r, one block
per adapted part: q and v by default) projects back. B starts at zero, so step 0 is the frozen model;
keeping ``z`` next to the mixture makes plain LoRA the special case of an all-zero mixture.

Unlike LoRA this update cannot be merged into W: the convolution mixes neighbouring tokens and the gate
depends on the image, so Δ is not a fixed matrix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from adaptsam.model import FusedSegment
from adaptsam_convlora.grid import TokenGrid
from adaptsam_convlora.mixture import ConvMixture


class ConvLoraDelta(nn.Module):
    """Conv-LoRA for one qkv linear; a child module of that linear, added by :func:`add_conv_lora`."""

    adapter_owned = True

    def __init__(self, base: nn.Linear, parts: Mapping[str, FusedSegment], rank: int, alpha: float,
                 scales: tuple[int, ...], top_k: int):
        super().__init__()
        self.parts = dict(parts)
        self.rank = rank
        self.scale = alpha / rank
        self.out_features = base.out_features
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as LoRA; B = 0 makes step 0 exact
        self.lora_B = nn.ParameterDict({part: nn.Parameter(torch.zeros(segment.rows, rank))
                                        for part, segment in self.parts.items()})
        self.mixture = ConvMixture(rank, scales, top_k)
        self.grid: TokenGrid | None = None  # geometry of the current call, set by the block's pre-hook

    def up_projection(self) -> torch.Tensor:
        """B of every adapted part placed at its rows of the fused output (other rows zero): out × r."""
        full = self.lora_A.new_zeros(self.out_features, self.rank)
        for part, segment in self.parts.items():
            segment.view_weight(full).copy_(self.lora_B[part].view(segment.heads, segment.width, self.rank))
        return full

    def delta(self, inputs: torch.Tensor) -> torch.Tensor:
        """The update for qkv ``inputs`` (…, in) laid out as the call's windows: (…, out)."""
        if self.grid is None:
            raise RuntimeError("Conv-LoRA's qkv hook ran before its block recorded the token grid; was the "
                               "attention called outside its block?")
        bottleneck = inputs @ self.lora_A.t()
        grid = self.grid.to_grid(bottleneck)
        mixed = self.grid.to_windows(grid + self.mixture(grid), bottleneck.shape)
        return (mixed @ self.up_projection().t()) * self.scale

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scale={self.scale:g}, parts={list(self.parts)}"


def conv_lora_hook(delta: ConvLoraDelta, module: nn.Linear, args: tuple[Any, ...],
                   output: torch.Tensor) -> torch.Tensor:
    """Forward hook on the adapted qkv linear: output + Δ(input)."""
    return output + delta.delta(args[0])
