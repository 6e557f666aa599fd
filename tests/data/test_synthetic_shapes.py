"""SyntheticShapes: deterministic, the promised content, fast, no files."""

from __future__ import annotations

import time

import numpy as np
import pytest

from adaptsam.data.synthetic import DISC, SQUARE, SyntheticShapes, synthetic, synthetic_2class
from adaptsam.errors import DataError


def test_deterministic_from_seed_split_index():
    a, b = SyntheticShapes("train", size=64, n=4, seed=3), SyntheticShapes("train", size=64, n=4, seed=3)
    for i in range(4):
        np.testing.assert_array_equal(a[i].image, b[i].image)
        np.testing.assert_array_equal(a[i].mask, b[i].mask)
    other_seed = SyntheticShapes("train", size=64, n=4, seed=4)
    other_split = SyntheticShapes("test", size=64, n=4, seed=3)
    assert not np.array_equal(a[0].image, other_seed[0].image)
    assert not np.array_equal(a[0].image, other_split[0].image)
    assert not np.array_equal(a[0].image, a[1].image)


def test_default_sizes_and_types():
    assert [len(SyntheticShapes(s)) for s in ("train", "test", "val")] == [64, 32, 16]
    sample = SyntheticShapes("val")[0]
    assert sample.image.shape == (256, 256, 3) and sample.image.dtype == np.uint8
    assert sample.mask.shape == (256, 256) and sample.mask.dtype == np.int64
    assert sample.meta["id"] == "val_00000" and sample.meta["image_path"] is None
    with pytest.raises(DataError, match="n=NUMBER_OF_IMAGES"):
        SyntheticShapes("holdout")
    assert len(SyntheticShapes("holdout", n=2)) == 2
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticShapes(num_classes=3)


def test_binary_content():
    ds = synthetic("test", size=96)
    assert ds.classes == ("background", "foreground") and ds.foreground_classes == (1,) and ds.is_binary
    for i in range(len(ds)):
        mask = ds.mask_at(i)
        assert set(np.unique(mask).tolist()) <= {0, 1} and mask.any()
        np.testing.assert_array_equal(mask, ds[i].mask)


def test_two_class_content_matches_shape_kinds():
    ds = synthetic_2class("train", size=96)
    assert ds.classes == ("background", "disc", "square") and ds.foreground_classes == (1, 2)
    seen = set()
    for i in range(len(ds)):
        layout = ds.layout(i)
        objects = [s for s in layout.shapes if s.label]
        assert 1 <= len(objects) <= 3
        for shape in objects:
            assert shape.label == (1 if shape.kind == DISC else 2) and shape.kind in (DISC, SQUARE)
            side = 2 * shape.extent[0] / ds.size
            assert 0.15 <= side <= 0.45
            assert 0 <= shape.cx <= ds.size and 0 <= shape.cy <= ds.size  # never entirely out of frame
        seen |= set(np.unique(ds.mask_at(i)).tolist())
    assert seen == {0, 1, 2}


def test_a_disc_mask_is_a_disc():
    ds = synthetic_2class("train", size=128)
    for i in range(len(ds)):
        layout = ds.layout(i)
        if len(layout.shapes) == 1 or layout.shapes[-1].kind != DISC:
            continue
        disc = layout.shapes[-1]  # painted last: nothing occludes it
        mask = ds.mask_at(i)
        rows, cols = np.mgrid[:128, :128]
        inside = (cols + 0.5 - disc.cx) ** 2 + (rows + 0.5 - disc.cy) ** 2 < disc.extent[0] ** 2
        assert (mask[inside] == 1).all()
        return
    pytest.fail("no image ends with a disc")


def test_objects_are_textured():
    """Objects carry stripes: more high-frequency energy than the background (a cue boxes alone don't give)."""
    ds = synthetic("train", size=128)
    object_energy, background_energy = [], []
    for i in range(16):
        sample = ds[i]
        gray = sample.image.astype(float).mean(axis=2)
        laplacian = np.abs(4 * gray[1:-1, 1:-1] - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:])
        inner = sample.mask[1:-1, 1:-1]
        if (inner == 1).sum() > 200:
            object_energy.append(laplacian[inner == 1].mean())
            background_energy.append(laplacian[inner == 0].mean())
    assert len(object_energy) >= 8 and np.mean(object_energy) > 1.2 * np.mean(background_energy)


def test_generation_is_fast():
    ds = SyntheticShapes("train", size=256, num_classes=2)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for i in range(16):
            ds[i]
        best = min(best, (time.perf_counter() - start) / 16)
    assert best < 0.010, f"{best * 1e3:.1f} ms per 256×256 image (target < 5 ms)"


def test_max_shapes():
    ds = SyntheticShapes("test", size=64, max_shapes=1)
    assert all(sum(shape.label > 0 for shape in ds.layout(i).shapes) == 1 for i in range(len(ds)))
    with pytest.raises(ValueError, match="max_shapes"):
        SyntheticShapes(max_shapes=0)
