"""Fixtures for the data tests: tiny datasets written to tmp_path, and the shared data when available."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATA_ENV = "ADAPTSAM_DATA"


def write_dataset(root: Path, items: dict[str, tuple[np.ndarray, np.ndarray]], splits: dict[str, list[str]],
                  labels: list[str] | None = None, image_suffix: str = ".png") -> Path:
    """Write ``items`` (id → (image, mask)) in the folder layout; masks are saved as 8-bit PNGs."""
    for sub in ("images", "masks", "splits"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for item, (image, mask) in items.items():
        Image.fromarray(image).save(root / "images" / f"{item}{image_suffix}")
        Image.fromarray(mask.astype(np.uint8), "L").save(root / "masks" / f"{item}.png")
    for split, ids in splits.items():
        (root / "splits" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    if labels is not None:
        (root / "labels.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(labels)))
    return root


def binary_item(seed: int, height: int = 6, width: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A random RGB image with a 0/255 mask holding a small rectangle."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[1:4, 2:5] = 255
    return image, mask


@pytest.fixture
def binary_folder(tmp_path: Path) -> Path:
    """A valid binary dataset: ids a, b, c; train = a, b; test = c."""
    items = {name: binary_item(i) for i, name in enumerate("abc")}
    return write_dataset(tmp_path / "binary", items, {"train": ["a", "b"], "test": ["c"]})


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., Path]:
    """``make_dataset(name, items, splits, labels=None)`` → a folder under tmp_path."""

    def make(name: str, items, splits, labels=None, image_suffix=".png") -> Path:
        return write_dataset(tmp_path / name, items, splits, labels, image_suffix)

    return make


@pytest.fixture
def shared_data() -> Path:
    """The shared real datasets ($ADAPTSAM_DATA); the test is skipped when they are not available."""
    value = os.environ.get(DATA_ENV)
    if not value:
        pytest.skip(f"{DATA_ENV} is not set: it must name the folder holding kvasir_seg/ and camvid/ "
                    "(e.g. ../shared/datasets)")
    home = Path(value)
    if not home.is_dir():
        pytest.skip(f"{DATA_ENV}={value} is not a folder")
    return home


@pytest.fixture
def make_item() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """``make_item(seed, height=6, width=8)`` → (random RGB image, 0/255 mask with a rectangle)."""
    return binary_item
