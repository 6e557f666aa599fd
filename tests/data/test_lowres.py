"""LowResDataset: fixed-shape tensors that collate, seeded augmentation, prompts consistent with the mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from adaptsam.data import IGNORE_INDEX, LowResDataset, SegmentationDataset, SyntheticShapes, box_from_mask
from adaptsam.data.types import Sample


class Counting(SegmentationDataset):
    """Wraps a dataset and counts reads, to check the cache; sample 1 is made empty (all background)."""

    def __init__(self, base: SegmentationDataset):
        self.base, self.reads = base, 0
        self.name, self.split, self.ids, self.classes = base.name, base.split, base.ids, base.classes

    def __getitem__(self, index: int) -> Sample:
        self.reads += 1
        sample = self.base[index]
        if index == 1:
            return Sample(sample.image, np.zeros_like(sample.mask), sample.meta)
        return sample


def test_eval_items_have_fixed_shapes_and_collate():
    base = SyntheticShapes("test", size=96, n=6)
    ds = LowResDataset(base, 64)
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["image"].min() >= 0 and item["image"].max() <= 1
    assert item["mask"].shape == (64, 64) and item["mask"].dtype == torch.int64
    assert item["classes"].tolist() == [1] and item["boxes"].shape == (1, 4) and item["boxes"].dtype == torch.float32
    assert item["points"].shape == (1, 1, 2) and item["point_labels"].tolist() == [[1.0]]
    assert item["valid_hw"].tolist() == [64, 64] and item["index"].item() == 0 and item["id"] == base.ids[0]
    area_averaged = Image.fromarray(base[0].image).resize((64, 64), Image.BOX)
    np.testing.assert_allclose(item["image"].numpy().transpose(1, 2, 0) * 255, np.asarray(area_averaged), atol=1e-3)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["boxes"].shape == (4, 1, 4) and len(batch["id"]) == 4


def test_eval_prompts_are_exact_and_inside():
    ds = LowResDataset(SyntheticShapes("test", size=64, n=8, num_classes=2), 64)
    assert ds.max_prompts == 2
    for i in range(len(ds)):
        item = ds[i]
        mask = item["mask"].numpy()
        for slot, cls in enumerate(item["classes"].tolist()):
            if cls < 0:
                assert item["point_labels"][slot].item() == -1 and item["boxes"][slot].abs().sum() == 0
                continue
            np.testing.assert_array_equal(item["boxes"][slot].numpy(), box_from_mask(mask, cls))
            x, y = item["points"][slot, 0].round().long().tolist()
            assert mask[y, x] == cls


def test_padding_is_ignored_and_valid_hw_reported(binary_folder):
    from adaptsam.data import ImageMaskFolder

    ds = LowResDataset(ImageMaskFolder(binary_folder), 16)
    item = ds[0]
    assert item["valid_hw"].tolist() == [12, 16]
    assert (item["mask"][12:] == IGNORE_INDEX).all() and (item["image"][:, 12:] == 0).all()


def test_cache_and_empty_samples():
    base = Counting(SyntheticShapes("test", size=64, n=3))
    ds = LowResDataset(base, 32)
    for _ in range(3):
        [ds[i] for i in range(3)]
    assert base.reads == 3
    empty = ds[1]
    assert empty["classes"].tolist() == [-1] and empty["point_labels"].tolist() == [[-1.0]]
    uncached = LowResDataset(base, 32, cache=False)
    uncached[0], uncached[0]
    assert base.reads == 5


def test_training_is_reproducible_per_epoch_and_consistent():
    base = SyntheticShapes("train", size=64, n=4)
    a, b = LowResDataset(base, 64, train=True, seed=3), LowResDataset(base, 64, train=True, seed=3)
    assert a.augment and a.box_jitter == pytest.approx(3.2)
    first = [a[i] for i in range(4)]
    for i in range(4):
        assert torch.equal(first[i]["image"], b[i]["image"]) and torch.equal(first[i]["boxes"], b[i]["boxes"])
    a.set_epoch(1)
    assert any(not torch.equal(first[i]["image"], a[i]["image"]) for i in range(4))
    a.set_epoch(0)
    assert all(torch.equal(first[i]["image"], a[i]["image"]) for i in range(4))

    exact = LowResDataset(base, 64, train=True, box_jitter=0.0, point_mode="box")
    for i in range(4):
        item = exact[i]
        mask = item["mask"].numpy()
        np.testing.assert_array_equal(item["boxes"][0].numpy(), box_from_mask(mask, 1))  # from the augmented mask
        x0, y0, x1, y1 = item["boxes"][0].tolist()
        assert item["points"][0, 0].tolist() == [(x0 + x1) / 2, (y0 + y1) / 2]


def test_jittered_boxes_stay_near_the_mask_box():
    ds = LowResDataset(SyntheticShapes("train", size=64, n=6), 64, train=True, augment=False, box_jitter=4.0)
    for i in range(6):
        item = ds[i]
        exact = box_from_mask(item["mask"].numpy(), 1)
        assert np.abs(item["boxes"][0].numpy() - exact).max() <= 4.0 + 1e-5


def test_subset_and_max_prompts():
    base = SyntheticShapes("train", size=64, n=10, num_classes=2)
    ds = LowResDataset(base, 32, indices=[7, 2], max_prompts=3)
    assert len(ds) == 2 and ds[0]["index"].item() == 7 and ds[1]["id"] == base.ids[2]
    assert ds[0]["classes"].shape == (3,) and ds[0]["classes"][-1].item() == -1
    one = LowResDataset(base, 32, max_prompts=1, train=True)
    assert all(one[i]["classes"].shape == (1,) for i in range(10))
    with pytest.raises(IndexError):
        LowResDataset(base, 32, indices=[10])
    with pytest.raises(ValueError, match="point_mode"):
        LowResDataset(base, 32, point_mode="middle")
    with pytest.raises(ValueError, match="positive integer"):
        LowResDataset(base, 0)
