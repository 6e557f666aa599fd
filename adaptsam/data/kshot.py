"""Seeded k-shot subsets: k images per foreground class (the few-shot rows of the bench)."""

from __future__ import annotations

import numpy as np

from adaptsam.data.prompts import present_classes
from adaptsam.data.types import SegmentationDataset
from adaptsam.errors import DataError


def class_presence(dataset: SegmentationDataset) -> dict[int, list[int]]:
    """For each foreground class, the indices of the images whose mask contains it (reads every mask once)."""
    classes = dataset.foreground_classes
    holders: dict[int, list[int]] = {c: [] for c in classes}
    for index in range(len(dataset)):
        for c in present_classes(dataset.mask_at(index), classes):
            holders[c].append(index)
    return holders


def k_shot_indices(dataset: SegmentationDataset, k: int, seed: int = 0) -> list[int]:
    """Sorted union of, for each foreground class, ``k`` distinct images containing that class.

    Each class draws from its own generator seeded by ``(seed, class)``, so the images picked for one
    class don't change when another class is added or removed. An image drawn for two classes counts
    for both, so the union can be smaller than ``k × classes``.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"Expected k (images per class) to be a positive integer, got {k!r}.")
    chosen: set[int] = set()
    for cls, holders in class_presence(dataset).items():
        if len(holders) < k:
            name = dataset.classes[cls] if cls < len(dataset.classes) else str(cls)
            raise DataError(
                f"Cannot draw {k} shots of class {cls} ({name!r}) from {dataset.name}/{dataset.split}: only "
                f"{len(holders)} of its {len(dataset)} images contain that class. Use a smaller k or a larger split."
            )
        rng = np.random.default_rng([seed, cls])
        chosen.update(int(i) for i in rng.choice(holders, size=k, replace=False))
    return sorted(chosen)
