"""Training augmentation at the low resolution R (albumentations), reproducible per (seed, epoch, index).

Masks move with the image (nearest-neighbour, borders filled with ``IGNORE_INDEX``); prompts are derived
from the augmented mask afterwards, so a box always fits the object the model sees.

Seeding: albumentations 2.0.8's ``Compose.set_random_seed(s)`` gives *every* transform its own generator
seeded with the same ``s``, so their first draws coincide (a flip with p=0.5 and an affine with p=0.5 then
always fire together). :func:`augment` instead hands the whole pipeline one generator pair
(``Compose.set_random_state``) seeded from ``(seed, epoch, index)``: the transforms draw from a single
stream in order, and a sample's augmentation is the same in every run, process and DataLoader worker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from adaptsam.data.degrade import check_resolution
from adaptsam.data.types import IGNORE_INDEX


@dataclass(frozen=True)
class AugmentationConfig:
    """The knobs of :func:`train_augmentation` (defaults: mild, so low-res content isn't destroyed)."""

    flip_p: float = 0.5
    affine_p: float = 0.7
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.05  # fraction of the image side, each direction
    rotate: float = 10.0  # degrees, each direction
    colour_p: float = 0.8
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.1
    hue: float = 0.02  # fraction of the hue circle

    def __post_init__(self) -> None:
        for name in ("flip_p", "affine_p", "colour_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Expected {name} in [0, 1], got {getattr(self, name)}.")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"Expected scale (low, high) with 0 < low <= high, got {self.scale}.")
        for name in ("translate", "rotate", "brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"Expected {name} >= 0, got {getattr(self, name)}.")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"Expected hue in [0, 0.5], got {self.hue}.")


def train_augmentation(resolution: int, config: AugmentationConfig | None = None) -> A.Compose:
    """Flip, small affine (image border 0, mask border 255, mask nearest) and colour jitter for R×R samples.

    Every transform keeps the R×R shape, so the result batches without resizing. Apply it through
    :func:`augment` to get the (seed, epoch, index) reproducibility.
    """
    check_resolution(resolution)
    c = config or AugmentationConfig()
    return A.Compose(
        [
            A.HorizontalFlip(p=c.flip_p),
            A.Affine(scale=c.scale, translate_percent=(-c.translate, c.translate), rotate=(-c.rotate, c.rotate),
                     interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                     border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX, p=c.affine_p),
            A.ColorJitter(brightness=c.brightness, contrast=c.contrast, saturation=c.saturation, hue=c.hue,
                          p=c.colour_p),
        ],
        seed=0,
    )


def augmentation_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed that depends on all three numbers (hash-mixed, so neighbours aren't correlated)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def augment(pipeline: A.Compose, image: np.ndarray, mask: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``pipeline`` with all its randomness drawn from ``seed``; returns (uint8 image, int64 mask).

    The mask travels as uint8 (OpenCV warps no int64), which holds every class index and ``IGNORE_INDEX``.
    """
    if mask.size and (mask.min() < 0 or mask.max() > IGNORE_INDEX):
        raise ValueError(f"Expected mask values in 0..{IGNORE_INDEX}, got {mask.min()}..{mask.max()}.")
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    out = pipeline(image=image, mask=mask.astype(np.uint8))
    return out["image"], out["mask"].astype(np.int64)
