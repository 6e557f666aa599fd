"""The one shape every dataset has: ``Sample`` and the ``SegmentationDataset`` base class.

Everything downstream (degrading to low resolution, prompts, k-shot sampling, the bench) only relies on
what is defined here, so a new dataset (a plugin, a folder, generated data) needs nothing else.
"""

from __future__ import annotations

import operator
from typing import Any, NamedTuple

import numpy as np
from torch.utils.data import Dataset

IGNORE_INDEX = 255
"""Mask value that is no class: not scored, never part of a prompt, used for padding and augmentation borders."""

BACKGROUND = "background"


class Sample(NamedTuple):
    """One image with its mask, at the dataset's own resolution.

    ``image`` is uint8 H×W×3 RGB; ``mask`` is int64 H×W holding class indices (binary sets: 0/1) or
    ``IGNORE_INDEX``; ``meta`` has at least ``id``, ``image_path`` and ``mask_path`` (``None`` for
    generated data) so an error or a prediction can always be traced back to its files.
    """

    image: np.ndarray
    mask: np.ndarray
    meta: dict[str, Any]


class SegmentationDataset(Dataset):
    """Base class of every dataset: a list of ids, a class table and samples by position.

    Subclasses set ``name``, ``split``, ``ids`` and ``classes`` (class names indexed by mask value) and
    implement ``__getitem__``. They may override :meth:`mask_at` when reading a mask alone is cheaper than
    a whole sample (k-shot sampling scans every mask of a split).
    """

    name: str = "dataset"
    split: str = "train"
    ids: list[str]
    classes: tuple[str, ...] = (BACKGROUND, "foreground")

    @property
    def foreground_classes(self) -> tuple[int, ...]:
        """Class indices that get prompts and are scored: every class not named "background".

        A binary set (``classes == ("background", "foreground")``) gives ``(1,)``; CamVid, whose 11
        classes include no background, gives ``(0, …, 10)``.
        """
        return tuple(i for i, name in enumerate(self.classes) if name.lower() != BACKGROUND)

    @property
    def is_binary(self) -> bool:
        """One scored class: one prompt per image and a binary loss, whatever the class is called."""
        return len(self.foreground_classes) == 1

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Sample:
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def mask_at(self, index: int) -> np.ndarray:
        """The int64 mask of sample ``index`` (subclasses override this when it can skip the image)."""
        return self[index].mask

    def _check_index(self, index: int) -> int:
        """Accept negative indices like a list; refuse out-of-range ones with the valid range."""
        index, n = operator.index(index), len(self)
        if not -n <= index < n:
            raise IndexError(f"{self.name}/{self.split} has {n} samples; got index {index}.")
        return index % n

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, n={len(self)}, classes={self.classes})"
