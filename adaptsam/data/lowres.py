"""``LowResDataset``: what training and evaluation consume, a dataset degraded to R×R with prompts as tensors.

Each item is a dict of fixed-shape tensors so torch's default collate batches it: up to K prompts per
image (one per foreground class present), padded with empty slots. Degraded samples are cached in memory
on first access (as uint8), because decoding and area-resizing a 1920×1072 JPEG every epoch costs far more
than the training step of a small adapter.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from adaptsam.data.degrade import Degraded, check_resolution, degrade
from adaptsam.data.prompts import box_from_mask, point_from_box, point_from_mask, present_classes
from adaptsam.data.types import SegmentationDataset

POINT_MODES = ("center", "random", "box")
EMPTY_CLASS = -1
EMPTY_POINT_LABEL = -1.0  # SAM's label for "not a point"
TRAIN_JITTER_FRACTION = 0.05


class LowResDataset(Dataset):
    """``base`` at resolution R with prompts derived from the (augmented) low-resolution mask.

    Args:
        base: any ``SegmentationDataset``.
        resolution: R; images become R×R (longest side R, padded bottom/right, see ``degrade``).
        train: training mode: augmentation on, box jitter on, prompt choice randomised.
        augment: override whether augmentation runs (default: ``train``).
        box_jitter: max shift per box coordinate in pixels at R (default: 0 at eval, 5% of R in training).
        point_mode: ``center`` (inside the object, see ``point_from_mask``), ``random`` (a random object
            pixel) or ``box`` (the box centre, after jitter).
        max_prompts: K, prompt slots per image (default: the number of foreground classes; binary → 1).
            When more classes are present, training draws K of them at random and evaluation takes the
            first K.
        seed: all randomness (augmentation, jitter, random points) is a function of (seed, epoch, index).
        indices: optional subset of ``base`` (e.g. from ``k_shot_indices``), in the given order.
        cache: keep degraded samples in memory (default); turn off for huge R × huge datasets.

    Items: ``image`` float32 3×R×R in [0, 1]; ``mask`` int64 R×R (255 = ignore, padding included);
    ``classes`` int64 [K] (present foreground classes, -1 = empty slot); ``boxes`` float32 [K, 4] xyxy in
    pixels at R; ``points`` float32 [K, 1, 2] xy; ``point_labels`` float32 [K, 1] (1 = positive, -1 on
    empty slots); ``valid_hw`` int64 [2] (unpadded content size before augmentation; after augmentation
    the mask's 255s are authoritative); ``index`` int64 (the index in ``base``); ``id`` str. Empty slots
    have zero boxes and points. Images with no foreground are kept, with every slot empty.

    With DataLoader workers, call :meth:`set_epoch` before creating each epoch's iterator (persistent
    workers keep the epoch they were started with).
    """

    def __init__(self, base: SegmentationDataset, resolution: int, *, train: bool = False, augment: bool | None = None,
                 box_jitter: float | None = None, point_mode: str = "center", max_prompts: int | None = None,
                 seed: int = 0, indices: Sequence[int] | None = None, cache: bool = True):
        self.base = base
        self.resolution = check_resolution(resolution)
        self.train = bool(train)
        self.augment = self.train if augment is None else bool(augment)
        if box_jitter is None:
            box_jitter = TRAIN_JITTER_FRACTION * self.resolution if self.train else 0.0
        if not box_jitter >= 0:
            raise ValueError(f"Expected box_jitter >= 0 (pixels at R), got {box_jitter}.")
        self.box_jitter = float(box_jitter)
        if point_mode not in POINT_MODES:
            raise ValueError(f"Expected point_mode one of {', '.join(POINT_MODES)}, got {point_mode!r}.")
        self.point_mode = point_mode
        self.foreground_classes = tuple(base.foreground_classes)
        if not self.foreground_classes:
            raise ValueError(f"{base.name} has no foreground classes (classes {base.classes}): nothing to prompt.")
        self.max_prompts = len(self.foreground_classes) if max_prompts is None else int(max_prompts)
        if self.max_prompts < 1:
            raise ValueError(f"Expected max_prompts >= 1, got {max_prompts}.")
        self.seed = int(seed)
        self.indices = list(range(len(base))) if indices is None else [_check_index(i, len(base)) for i in indices]
        self.epoch = 0
        self.cache = cache
        self._cache: dict[int, Degraded] = {}
        self._pipeline = None
        if self.augment:  # albumentations takes seconds to import; evaluation never needs it
            from adaptsam.data.transforms import train_augmentation

            self._pipeline = train_augmentation(self.resolution)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.base.classes

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation and jitter ``__getitem__`` reproduces."""
        self.epoch = int(epoch)

    def without_augmentation(self) -> LowResDataset:
        """The same samples, prompts and jitter without image augmentation (sharing the degraded cache).

        A frozen encoder's embeddings can only be cached if the image it sees doesn't change between
        epochs; prompt jitter stays, since it only changes the decoder's input.
        """
        clone = copy.copy(self)
        clone.augment = False
        clone._pipeline = None
        return clone

    def __len__(self) -> int:
        return len(self.indices)

    def degraded(self, position: int) -> Degraded:
        """The sample at ``position`` degraded to R (mask stored as uint8), from the cache when enabled."""
        index = self.indices[position]
        hit = self._cache.get(index)
        if hit is not None:
            return hit
        sample = self.base[index]
        d = degrade(sample.image, sample.mask, self.resolution)
        d = d._replace(mask=d.mask.astype(np.uint8))
        if self.cache:
            self._cache[index] = d
        return d

    def __getitem__(self, position: int) -> dict[str, Any]:
        position = _check_index(position, len(self))
        index = self.indices[position]
        d = self.degraded(position)
        image, mask = d.image, d.mask.astype(np.int64)
        if self._pipeline is not None:
            from adaptsam.data.transforms import augment, augmentation_seed

            image, mask = augment(self._pipeline, image, mask, augmentation_seed(self.seed, self.epoch, index))
        # separate streams for training (changes every epoch) and evaluation (fixed), both per image
        rng = np.random.default_rng([self.seed, self.epoch, index, 1] if self.train else [self.seed, index, 2])
        classes = self._choose_classes(present_classes(mask, self.foreground_classes), rng)

        k = self.max_prompts
        out_classes = np.full(k, EMPTY_CLASS, dtype=np.int64)
        boxes = np.zeros((k, 4), dtype=np.float32)
        points = np.zeros((k, 1, 2), dtype=np.float32)
        labels = np.full((k, 1), EMPTY_POINT_LABEL, dtype=np.float32)
        for slot, cls in enumerate(classes):
            out_classes[slot] = cls
            boxes[slot] = box_from_mask(mask, cls, jitter=self.box_jitter, rng=rng)
            if self.point_mode == "box":
                points[slot, 0] = point_from_box(boxes[slot])
            else:
                points[slot, 0] = point_from_mask(mask, cls, mode=self.point_mode, rng=rng)
            labels[slot, 0] = 1.0
        return {
            # scaled in numpy: torch's uint8 → float conversion is ~500× slower on some CPU builds
            "image": torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / np.float32(255)),
            "mask": torch.from_numpy(mask),
            "classes": torch.from_numpy(out_classes),
            "boxes": torch.from_numpy(boxes),
            "points": torch.from_numpy(points),
            "point_labels": torch.from_numpy(labels),
            "valid_hw": torch.tensor(d.valid_hw, dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
            "id": self.base.ids[index],
        }

    def _choose_classes(self, present: list[int], rng: np.random.Generator) -> list[int]:
        if len(present) <= self.max_prompts:
            return present
        if not self.train:
            return present[: self.max_prompts]
        picked = rng.choice(len(present), size=self.max_prompts, replace=False)
        return [present[i] for i in sorted(picked)]

    def __repr__(self) -> str:
        mode = "train" if self.train else "eval"
        return (f"LowResDataset({self.base!r}, resolution={self.resolution}, {mode}, augment={self.augment}, "
                f"n={len(self)}, max_prompts={self.max_prompts})")


def _check_index(index: int, n: int) -> int:
    index = operator.index(index)
    if not -n <= index < n:
        raise IndexError(f"Index {index} is out of range for {n} samples.")
    return index % n
