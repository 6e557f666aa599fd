"""From what a ``qkv`` linear sees back to the image's token grid, and back again.

A convolution needs neighbours, but the fused ``qkv`` of a windowed block never sees the grid:

* SAM ViT blocks take B×H×W×C; windowed ones pad H×W up to multiples of the window w and call attention on
  (B·nH·nW)×w×w×C windows, global ones on the whole B×H×W×C grid;
* TinyViT blocks take B×L×C (L = H·W, H×W stored on the block); they pad and call attention on
  (B·nH·nW)×w²×C windows, or on B×L×C when the grid is exactly one window.

Both lay windows out row-major, each window row-major inside. A forward pre-hook on the block records the
geometry of the current call (:class:`TokenGrid`); the qkv hook then un-windows its bottleneck features to
B×r×H×W, crops the padding, convolves over the real grid, and re-windows the result. Padding tokens get a
zero update, so their keys and values stay the frozen ones (upstream discards their outputs). The
convolution thus sees each token's true neighbours across window borders, and the adapter computes the same
function whatever window the blocks use (the ``native_window`` policy changes it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TokenGrid:
    """Geometry of one block call: ``batch`` images of ``height``×``width`` tokens, seen by qkv in
    ``window``×``window`` windows of the grid padded to window multiples (``window=0``: the whole grid)."""

    batch: int
    height: int
    width: int
    window: int

    @property
    def padded(self) -> tuple[int, int]:
        if not self.window:
            return self.height, self.width
        return (math.ceil(self.height / self.window) * self.window, math.ceil(self.width / self.window) * self.window)

    @property
    def tokens(self) -> int:
        """Token vectors qkv sees in this call (padding included)."""
        height, width = self.padded
        return self.batch * height * width

    def to_grid(self, features: torch.Tensor) -> torch.Tensor:
        """qkv-side features (…, r), in the call's window layout → B×r×H×W on the real grid."""
        rank = features.shape[-1]
        count = features.numel() // rank
        if count != self.tokens:
            raise RuntimeError(f"Conv-LoRA expected {self.tokens} tokens at qkv for {self} but got {count} "
                               f"(features of shape {tuple(features.shape)}); the block's attention no longer "
                               f"windows its input the way SAM ViT and TinyViT blocks do.")
        height, width = self.padded
        if self.window:
            w = self.window
            grid = features.reshape(self.batch, height // w, width // w, w, w, rank).permute(0, 1, 3, 2, 4, 5)
            grid = grid.reshape(self.batch, height, width, rank)[:, :self.height, :self.width]
        else:
            grid = features.reshape(self.batch, height, width, rank)
        return grid.permute(0, 3, 1, 2)

    def to_windows(self, grid: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """Inverse of :meth:`to_grid`: B×r×H×W → the qkv-side ``shape``; padding tokens are zero."""
        tokens = grid.permute(0, 2, 3, 1)
        if not self.window:
            return tokens.reshape(shape)
        height, width = self.padded
        tokens = F.pad(tokens, (0, 0, 0, width - self.width, 0, height - self.height))
        w, rank = self.window, tokens.shape[-1]
        windows = tokens.reshape(self.batch, height // w, w, width // w, w, rank).permute(0, 1, 3, 2, 4, 5)
        return windows.reshape(shape)


class GridHolder(Protocol):
    """Whatever keeps the current call's geometry for a qkv hook (the Conv-LoRA layer of that block)."""

    grid: TokenGrid | None


def record_bhwc(holder: GridHolder, block: nn.Module, args: tuple[Any, ...]) -> None:
    """Pre-hook on a SAM ViT block: input B×H×W×C, window ``block.window_size`` (0 = global attention)."""
    batch, height, width, _ = args[0].shape
    holder.grid = TokenGrid(batch, height, width, int(block.window_size))


def record_blc(holder: GridHolder, block: nn.Module, args: tuple[Any, ...]) -> None:
    """Pre-hook on a TinyViT block: input B×L×C, grid ``block.input_resolution``, window ``block.window_size``
    (a grid of exactly one window is not partitioned, which is the same layout)."""
    height, width = (int(v) for v in block.input_resolution)
    holder.grid = TokenGrid(args[0].shape[0], height, width, int(block.window_size))


RECORDERS = {"bhwc": record_bhwc, "blc": record_blc}
