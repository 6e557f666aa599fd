"""Seeded train/val/test splits, drawn for a dataset folder that has none (DESIGN.md §3, "Dataset").

A folder with ``images/`` and ``masks/`` but no ``splits/`` works everywhere: ``ImageMaskFolder`` asks
:func:`auto_split` for its ids, which draws a seeded 80/20 train/test split once per folder and process and
*says* so on stderr (seed, how many in each split), because a split nobody knows about makes results
impossible to reproduce. ``adaptsam split DIR`` writes the same split to ``splits/`` for reuse.

Multi-class folders (with ``labels.txt``) are stratified: before the random fill, every class present in
the data gets one image into train (rarest class first, the first image of the seeded order that holds it),
so no class is seen only at test time when the data can avoid it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adaptsam.errors import ConfigError, DataError

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitConfig:
    """How a split is drawn; test gets what train and val leave."""

    train: float = field(default=0.8, metadata={"help": "share of images in train (0 < train <= 1)"})
    val: float = field(default=0.0, metadata={"help": "share of images in val (0 = no val split)"})
    seed: int = field(default=0, metadata={"help": "seed of the shuffle; the same seed gives the same split"})

    def __post_init__(self) -> None:
        if not 0.0 < self.train <= 1.0:
            raise ConfigError(f"Expected --train in (0, 1], got {self.train}; e.g. 0.8 for an 80/20 split.")
        if not 0.0 <= self.val < 1.0 or self.train + self.val > 1.0 + 1e-9:
            raise ConfigError(f"Expected --val in [0, 1) with train + val <= 1, got train {self.train}, "
                              f"val {self.val}.")


@dataclass(frozen=True)
class Split:
    """The ids of each split (sorted), and how they were drawn."""

    splits: dict[str, tuple[str, ...]]
    config: SplitConfig
    stratified: bool = False
    left_out: tuple[str, ...] = ()  # images without a mask

    def describe(self) -> str:
        counts = ", ".join(f"{name} {len(ids)}" for name, ids in self.splits.items())
        total = sum(len(ids) for ids in self.splits.values())
        text = f"seed {self.config.seed}: {counts} of {total} images"
        if self.stratified:
            text += ", stratified so every class appears in train"
        if self.left_out:
            text += f"; {len(self.left_out)} image(s) without a mask left out"
        return text


def draw_split(ids: list[str], config: SplitConfig = SplitConfig(),
               classes: dict[str, set[int]] | None = None) -> Split:
    """Shuffle ``ids`` with ``config.seed`` and cut it into train / val / test.

    Sizes: ``round(train·n)`` train (at least 1) and ``round(val·n)`` val; test gets the rest, and keeps
    at least one image while ``train < 1`` and there are two or more. With ``classes`` (id → class
    indices present, background excluded), one image per class goes to train first (see the module
    docstring); train grows past its share only if covering every class needs it.
    """
    ids = sorted(set(ids))
    if not ids:
        raise DataError("Cannot split a dataset with no images that have masks.")
    n = len(ids)
    order = [ids[i] for i in np.random.default_rng(config.seed).permutation(n)]
    n_train = max(1, round(config.train * n))
    n_val = round(config.val * n)
    if config.train < 1.0 and n >= 2:
        n_train = min(n_train, n - 1)
        n_val = min(n_val, n - n_train - 1)

    train: list[str] = []
    if classes:
        counts: dict[int, int] = {}
        for item in ids:
            for c in classes.get(item, ()):
                counts[c] = counts.get(c, 0) + 1
        chosen: set[str] = set()
        for c in sorted(counts, key=lambda k: (counts[k], k)):
            if any(c in classes.get(item, ()) for item in chosen):
                continue
            first = next(item for item in order if c in classes.get(item, ()))
            chosen.add(first)
            train.append(first)
    taken = set(train)
    rest = [item for item in order if item not in taken]
    fill = max(0, n_train - len(train))
    train += rest[:fill]
    rest = rest[fill:]
    val, test = rest[:n_val], rest[n_val:]
    splits = {"train": tuple(sorted(train))}
    if val:
        splits["val"] = tuple(sorted(val))
    if test:
        splits["test"] = tuple(sorted(test))
    return Split(splits, config, stratified=bool(classes))


def folder_split(root: str | os.PathLike, config: SplitConfig = SplitConfig()) -> Split:
    """Draw the split of a folder in the adaptsam layout from its images that have masks."""
    from adaptsam.data.layout import IMAGE_SUFFIXES, MASK_SUFFIX, read_labels, read_mask

    root = Path(root)
    for sub in ("images", "masks"):
        if not (root / sub).is_dir():
            raise DataError(f"Cannot split {root}: it has no {sub}/ folder. Expected images/<id>.<jpg|png> and "
                            "masks/<id>.png.")
    images = sorted({p.stem for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES})
    masks = {p.stem for p in (root / "masks").iterdir() if p.name.lower().endswith(MASK_SUFFIX)}
    ids = [i for i in images if i in masks]
    left_out = tuple(i for i in images if i not in masks)
    classes = None
    labels = root / "labels.txt"
    if labels.is_file() and len(read_labels(labels)) > 2:  # stratify multi-class data only
        classes = {}
        for item in ids:
            values = np.unique(read_mask(root / "masks" / f"{item}{MASK_SUFFIX}"))
            classes[item] = {int(v) for v in values if 0 < v < 255}
    split = draw_split(ids, config, classes)
    return Split(split.splits, split.config, split.stratified, left_out)


_DRAWN: dict[Path, Split] = {}


def auto_split(root: str | os.PathLike) -> Split:
    """The default split (80/20, seed 0) of a folder without ``splits/``: drawn once per process, said on stderr."""
    key = Path(root).resolve()
    if key not in _DRAWN:
        _DRAWN[key] = folder_split(key)
        print(f"adaptsam: {root} has no splits/ folder, so a split was drawn ({_DRAWN[key].describe()}). "
              f"Run 'adaptsam split {root}' to write it to splits/ for reuse.", file=sys.stderr)
    return _DRAWN[key]


def write_split(root: str | os.PathLike, split: Split, *, overwrite: bool = False) -> list[Path]:
    """Write ``root/splits/<name>.txt`` (one id per line); refuses to replace existing split files."""
    folder = Path(root) / "splits"
    existing = [folder / f"{name}.txt" for name in SPLIT_NAMES if (folder / f"{name}.txt").exists()]
    if existing and not overwrite:
        raise DataError(f"{folder} already holds {', '.join(p.name for p in existing)}: pass --overwrite to "
                        "replace them (results made with the old split will no longer be comparable).")
    folder.mkdir(parents=True, exist_ok=True)
    for path in existing:
        path.unlink()
    written = []
    for name, ids in split.splits.items():
        path = folder / f"{name}.txt"
        path.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
        written.append(path)
    return written
