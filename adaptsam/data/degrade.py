"""Degrading a sample to the bench's low resolution R (DESIGN.md §5).

The longest side becomes R: area averaging when shrinking (what a low-resolution sensor records, without
the aliasing of point sampling), bicubic when enlarging; the mask is resized nearest-neighbour so it keeps
its class indices. The result is padded bottom/right to R×R: image with 0, mask with ``IGNORE_INDEX`` so
the padding is never scored. Metrics are computed at R, against this mask: that is what a user has.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

from adaptsam.data.types import IGNORE_INDEX


class Degraded(NamedTuple):
    """A sample at resolution R: ``image`` R×R×3 uint8, ``mask`` R×R int64 (255 on padding),
    ``valid_hw`` the (height, width) of the unpadded content (top-left), ``scale`` = R / original longest side."""

    image: np.ndarray
    mask: np.ndarray
    valid_hw: tuple[int, int]
    scale: float


def check_resolution(resolution: object) -> int:
    """Return ``resolution`` if it is a positive integer, else raise a ValueError that says so."""
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
        raise ValueError(f"Expected the resolution R to be a positive integer (pixels, e.g. 128), got {resolution!r}.")
    return int(resolution)


def resized_hw(height: int, width: int, resolution: int) -> tuple[int, int]:
    """(h, w) after scaling the longest side to ``resolution``; the other side rounds, and is at least 1."""
    scale = resolution / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def degrade(image: np.ndarray, mask: np.ndarray, resolution: int) -> Degraded:
    """Resize ``image`` (H×W×3 uint8) and ``mask`` (H×W, values 0..255) to longest side R and pad to R×R."""
    r = check_resolution(resolution)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"Expected an H×W×3 uint8 image, got shape {image.shape} and dtype {image.dtype}.")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"Expected a mask of the image's size {image.shape[:2]}, got {mask.shape}.")
    if mask.size and (mask.min() < 0 or mask.max() > IGNORE_INDEX):
        raise ValueError(f"Expected mask values in 0..{IGNORE_INDEX}, got {mask.min()}..{mask.max()}.")
    h, w = image.shape[:2]
    nh, nw = resized_hw(h, w, r)
    if (nh, nw) == (h, w):
        small_image, small_mask = image, mask.astype(np.uint8)
    else:
        shrinking = r < max(h, w)
        small_image = np.asarray(Image.fromarray(image, "RGB").resize(
            (nw, nh), Image.BOX if shrinking else Image.BICUBIC))
        small_mask = np.asarray(Image.fromarray(mask.astype(np.uint8), "L").resize((nw, nh), Image.NEAREST))
    out_image = np.zeros((r, r, 3), dtype=np.uint8)
    out_mask = np.full((r, r), IGNORE_INDEX, dtype=np.int64)
    out_image[:nh, :nw] = small_image
    out_mask[:nh, :nw] = small_mask
    return Degraded(out_image, out_mask, (nh, nw), r / max(h, w))
