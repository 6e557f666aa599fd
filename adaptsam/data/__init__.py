"""adaptsam's data layer: datasets, degradation to low resolution, prompts, augmentation, k-shot subsets.

::

    from adaptsam.data import open_dataset, LowResDataset, k_shot_indices
    base = open_dataset("kvasir_seg", "train")        # or a folder path, or "synthetic"
    train = LowResDataset(base, 128, train=True, indices=k_shot_indices(base, 4))

Most names are imported on first use: the registry imports ``adaptsam.data.folder`` to build a dataset,
and that must not pay for albumentations (seconds) or scipy. ``degrade`` is imported eagerly because it is
also a submodule's name: loading the submodule would otherwise bind ``adaptsam.data.degrade`` to the module,
hiding the function. Importing this package has no side effects.
"""

from __future__ import annotations

import importlib
from typing import Any

from adaptsam.data.degrade import Degraded, degrade
from adaptsam.data.types import IGNORE_INDEX, Sample, SegmentationDataset

_EXPORTS = {
    "ImageMaskFolder": "adaptsam.data.folder",
    "SyntheticShapes": "adaptsam.data.synthetic",
    "open_dataset": "adaptsam.data.resolve",
    "LowResDataset": "adaptsam.data.lowres",
    "k_shot_indices": "adaptsam.data.kshot",
    "import_labelme": "adaptsam.data.labelme",
    "AugmentationConfig": "adaptsam.data.transforms",
    "train_augmentation": "adaptsam.data.transforms",
    "box_from_mask": "adaptsam.data.prompts",
    "point_from_mask": "adaptsam.data.prompts",
    "point_from_box": "adaptsam.data.prompts",
    "present_classes": "adaptsam.data.prompts",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'adaptsam.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [  # noqa: F822 - the lazily imported names are resolved by __getattr__
    "AugmentationConfig",
    "Degraded",
    "IGNORE_INDEX",
    "ImageMaskFolder",
    "LowResDataset",
    "Sample",
    "SegmentationDataset",
    "SyntheticShapes",
    "box_from_mask",
    "degrade",
    "import_labelme",
    "k_shot_indices",
    "open_dataset",
    "point_from_box",
    "point_from_mask",
    "present_classes",
    "train_augmentation",
]
