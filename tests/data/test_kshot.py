"""k-shot subsets: seeded, k images per foreground class, clear error when a class is too rare."""

from __future__ import annotations

import numpy as np
import pytest

from adaptsam.data import SegmentationDataset, SyntheticShapes, k_shot_indices
from adaptsam.data.types import Sample
from adaptsam.errors import DataError


class MaskList(SegmentationDataset):
    """A dataset made of masks only, to control which image holds which class."""

    def __init__(self, masks: list[np.ndarray], classes: tuple[str, ...]):
        self.name, self.split, self.classes = "masks", "train", classes
        self.masks = masks
        self.ids = [str(i) for i in range(len(masks))]

    def __getitem__(self, index: int) -> Sample:
        mask = self.masks[self._check_index(index)]
        return Sample(np.zeros((*mask.shape, 3), np.uint8), mask, {"id": str(index)})


def masks_with(classes_per_image: list[set[int]]) -> list[np.ndarray]:
    masks = []
    for present in classes_per_image:
        mask = np.zeros((4, 4), np.int64)
        for c in present:
            mask[c % 4, c // 4] = c
        masks.append(mask)
    return masks


def test_per_class_coverage_and_determinism():
    layout = [{1}, {2}, {1, 2}, {3}, {1}, {3}, {2, 3}, set(), {1}, {3}]
    ds = MaskList(masks_with(layout), ("background", "a", "b", "c"))
    picked = k_shot_indices(ds, 2, seed=5)
    assert picked == sorted(set(picked)) and picked == k_shot_indices(ds, 2, seed=5)
    for cls in (1, 2, 3):
        assert sum(cls in layout[i] for i in picked) >= 2
    assert 7 not in picked  # the empty image never helps
    assert len({tuple(k_shot_indices(ds, 1, seed=s)) for s in range(20)}) > 1


def test_all_images_when_k_equals_count():
    layout = [{1}, {1}, {1}]
    assert k_shot_indices(MaskList(masks_with(layout), ("background", "fg")), 3) == [0, 1, 2]


def test_too_few_images_names_class_and_dataset():
    ds = MaskList(masks_with([{1}, {1, 2}, {1}]), ("background", "cat", "dog"))
    with pytest.raises(DataError) as info:
        k_shot_indices(ds, 2)
    message = str(info.value)
    assert "class 2" in message and "'dog'" in message and "masks/train" in message and "only 1" in message
    with pytest.raises(ValueError, match="positive integer"):
        k_shot_indices(ds, 0)


def test_synthetic_two_class():
    ds = SyntheticShapes("train", size=64, num_classes=2)
    picked = k_shot_indices(ds, 3, seed=1)
    for cls in (1, 2):
        assert sum((ds.mask_at(i) == cls).any() for i in picked) >= 3
    assert 3 <= len(picked) <= 6
