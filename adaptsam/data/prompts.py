"""Prompts derived from a mask, per sample, in numpy (DESIGN.md §5).

Coordinates are pixel indices of the mask they come from (x = column, y = row), the convention of
MedSAM's boxes: a box ``[x0, y0, x1, y1]`` holds the extreme pixels of the class, inclusive. Pixels equal
to ``IGNORE_INDEX`` never belong to a class. Prompts are always computed from the mask *after*
degradation and augmentation, so they agree with what the model sees.

Mapping prompts between resolutions happens here and only here (:func:`map_boxes`, :func:`map_points`;
docs/conventions.md): a box maps to the pixels it *covers* at the other resolution, a point to the same
pixel centre. Multiplying by the scale instead maps a box's last pixel to the first of its s sub-pixels and
loses s−1 pixels at the right and bottom (3 px at R=64 → 256), which cost LiteMedSAM 0.02 Dice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np

from adaptsam.data.types import IGNORE_INDEX

POINT_MODES = ("center", "random")

Coords = TypeVar("Coords")  # a numpy array or a torch tensor; the mappings keep the type


def _xy_scale(coords: Any, scale_x: Any, scale_y: Any) -> Any:
    """(…, 2) scales [sx, sy] broadcastable against ``coords[..., :2]``; scalars or per-image arrays."""
    if hasattr(coords, "new_tensor"):  # torch
        import torch

        sx = torch.as_tensor(scale_x, dtype=coords.dtype, device=coords.device)
        sy = torch.as_tensor(scale_y, dtype=coords.dtype, device=coords.device)
        sx, sy = torch.broadcast_tensors(sx, sy)
        return torch.stack([sx, sy], dim=-1)
    sx, sy = np.broadcast_arrays(np.asarray(scale_x, np.float64), np.asarray(scale_y, np.float64))
    return np.stack([sx, sy], axis=-1)


def map_points(points: Coords, scale_x: Any, scale_y: Any | None = None) -> Coords:
    """Points ``[..., 2]`` (x, y pixel indices, or sub-pixel positions) at one resolution → the same
    positions at a resolution ``scale`` times larger: pixel centres stay pixel centres, ``(x+0.5)·s−0.5``.

    ``scale_x``/``scale_y`` are scalars or arrays broadcastable to ``points.shape[:-1]`` (per image: shape
    B×1×1 for B×K×N×2 points); ``scale_y`` defaults to ``scale_x``.
    """
    s = _xy_scale(points, scale_x, scale_x if scale_y is None else scale_y)
    return (points + 0.5) * s - 0.5


def map_boxes(boxes: Coords, scale_x: Any, scale_y: Any | None = None) -> Coords:
    """Boxes ``[..., 4]`` (x0, y0, x1, y1; extreme pixels inclusive, see :func:`box_from_mask`) at one
    resolution → the pixels they cover at a resolution ``scale`` times larger:
    ``[x0·s, y0·s, (x1+1)·s−1, (y1+1)·s−1]``.

    For an integer s this is exactly the bounding box of the nearest-upsampled mask. Going down (s < 1)
    a one-pixel box may cover less than a pixel; the far corner is then kept at the near one, so the box
    never turns inside out. Scales as in :func:`map_points`.
    """
    s = _xy_scale(boxes, scale_x, scale_x if scale_y is None else scale_y)
    low = boxes[..., :2] * s
    high = (boxes[..., 2:] + 1) * s - 1
    if hasattr(boxes, "new_tensor"):
        import torch

        return torch.cat([low, torch.maximum(high, low)], dim=-1)
    return np.concatenate([low, np.maximum(high, low)], axis=-1)

def _class_pixels(mask: np.ndarray, cls: int) -> np.ndarray:
    if cls == IGNORE_INDEX:
        raise ValueError(f"Class {IGNORE_INDEX} is the ignore index; it has no prompts.")
    if mask.ndim != 2:
        raise ValueError(f"Expected an H×W mask, got shape {mask.shape}.")
    return mask == cls


def present_classes(mask: np.ndarray, foreground_classes: Iterable[int]) -> list[int]:
    """The foreground classes that have at least one pixel in ``mask``, in the given order."""
    wanted = [int(c) for c in foreground_classes if c != IGNORE_INDEX]
    if len(wanted) <= 4:  # a few comparisons beat sorting a multi-megapixel mask (np.unique) by ~10×
        return [c for c in wanted if (mask == c).any()]
    if mask.size and mask.min() >= 0:
        counts = np.bincount(mask.ravel())
        return [c for c in wanted if c < len(counts) and counts[c] > 0]
    values = set(np.unique(mask).tolist())
    return [c for c in wanted if c in values]


def box_from_mask(mask: np.ndarray, cls: int, *, jitter: float = 0.0,
                  rng: np.random.Generator | None = None) -> np.ndarray | None:
    """``[x0, y0, x1, y1]`` float32: the extreme pixels of class ``cls``, or None if it is absent.

    ``jitter`` (pixels) moves each coordinate independently by a uniform draw in [-jitter, jitter] (the
    training-time perturbation of SAM/MedSAM, so the model doesn't learn to trust boxes blindly); the
    result is clipped to the image and kept ordered (x0 <= x1, y0 <= y1). Pass a seeded ``rng`` for
    reproducible jitter; without one a fresh, unseeded generator is used.
    """
    if not jitter >= 0:
        raise ValueError(f"Expected jitter >= 0 (pixels), got {jitter}.")
    where = _class_pixels(mask, cls)
    rows = np.flatnonzero(where.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(where.any(axis=0))
    box = np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)
    if jitter > 0:
        rng = np.random.default_rng() if rng is None else rng
        box += rng.uniform(-jitter, jitter, size=4)
        h, w = mask.shape
        box = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])
        box = np.array([min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])])
    return box.astype(np.float32)


def point_from_mask(mask: np.ndarray, cls: int, *, mode: str = "center",
                    rng: np.random.Generator | None = None) -> np.ndarray | None:
    """A positive point ``[x, y]`` float32 inside class ``cls``, or None if it is absent.

    ``"center"``: the centre of mass when the pixel there belongs to the class; otherwise (a ring, an L,
    two separate parts) the class pixel farthest from the class boundary, so the point is always inside.
    ``"random"``: a uniformly drawn class pixel (pass a seeded ``rng``).
    """
    if mode not in POINT_MODES:
        raise ValueError(f"Expected point mode one of {', '.join(POINT_MODES)}, got {mode!r}.")
    where = _class_pixels(mask, cls)
    ys, xs = np.nonzero(where)
    if ys.size == 0:
        return None
    if mode == "random":
        rng = np.random.default_rng() if rng is None else rng
        k = int(rng.integers(ys.size))
        return np.array([xs[k], ys[k]], dtype=np.float32)
    cx, cy = xs.mean(), ys.mean()
    if where[int(round(cy)), int(round(cx))]:
        return np.array([cx, cy], dtype=np.float32)
    r0, r1, c0, c1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1  # search the class's bounding box only
    y, x = _deepest_pixel(where[r0:r1, c0:c1])
    return np.array([x + c0, y + r0], dtype=np.float32)


def point_from_box(box: np.ndarray) -> np.ndarray:
    """The centre ``[x, y]`` float32 of an ``[x0, y0, x1, y1]`` box (the "points from box" prompt)."""
    box = np.asarray(box, dtype=np.float64)
    if box.shape != (4,):
        raise ValueError(f"Expected a box [x0, y0, x1, y1], got shape {box.shape}.")
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float32)


def _deepest_pixel(where: np.ndarray) -> tuple[int, int]:
    """(row, col) of the True pixel farthest from any False pixel; the array border counts as outside.

    Called on the class's bounding box: every pixel just outside the box is either not in the class or
    outside the image, so the depths equal those on the whole mask (with the image border as boundary).
    """
    padded = np.pad(where, 1, constant_values=False)
    try:  # scipy comes with albumentations; imported here because it costs ~0.5 s and is rarely needed
        from scipy.ndimage import distance_transform_edt
    except ImportError:  # pragma: no cover - only where scipy is missing
        depth = _chamfer_distance(padded)
    else:
        depth = distance_transform_edt(padded)
    row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(row) - 1, int(col) - 1


def _chamfer_distance(inside: np.ndarray) -> np.ndarray:
    """City-block distance to the nearest outside pixel by repeated erosion; enough to rank pixels by depth."""
    depth = np.zeros(inside.shape, dtype=np.int64)
    current = inside.copy()
    while current.any():
        depth += current
        eroded = current.copy()
        eroded[1:] &= current[:-1]
        eroded[:-1] &= current[1:]
        eroded[:, 1:] &= current[:, :-1]
        eroded[:, :-1] &= current[:, 1:]
        current = eroded
    return depth
