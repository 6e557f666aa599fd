"""``ImageMaskFolder``: any dataset in adaptsam's folder layout, and the ``folder`` dataset factory.

Layout (DESIGN.md §5)::

    root/
      images/<id>.<jpg|png>     any size, RGB / grayscale / RGBA (returned as RGB)
      masks/<id>.png            single channel, same size as its image
      splits/<split>.txt        one id per line
      labels.txt                optional, lines "index name"

Without ``labels.txt`` a dataset is binary: masks hold 0/255 (or 0/1) and are returned as 0/1. With it,
mask values are class indices and 255 is ignored. Construction only lists folders (cheap, so opening
kvasir_seg costs milliseconds); pixel-level problems (unreadable files, sizes, mask values) are reported
when a sample is first read, always naming the files involved.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from adaptsam.data.layout import (  # the layout's names, also importable from here (where users find them)
    _READ_ERRORS,
    IMAGE_SUFFIXES,
    LAYOUT,
    MASK_SUFFIX,
    _read_text,
    read_labels,
    read_mask,
)
from adaptsam.data.types import BACKGROUND, IGNORE_INDEX, Sample, SegmentationDataset
from adaptsam.errors import DataError, format_list

BINARY_CLASSES = (BACKGROUND, "foreground")


class ImageMaskFolder(SegmentationDataset):
    """One split of a dataset stored in the folder layout (see the module docstring).

    Args:
        root: the dataset folder (the one holding ``images/``, ``masks/`` and ``splits/``).
        split: name of a file in ``splits/`` without ``.txt``.
        name: shown in errors and reports; defaults to the folder's name.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", *, name: str | None = None):
        self.root = Path(root)
        _check_layout(self.root)
        self.name = name or self.root.resolve().name
        self.split = split
        labels = self.root / "labels.txt"
        self.labels_path: Path | None = labels if labels.is_file() else None
        self.classes = read_labels(labels) if self.labels_path else BINARY_CLASSES
        self.ids = read_split(self.root, split)
        self.image_paths, self.mask_paths = _match_files(self.root, self.root / "splits" / f"{split}.txt", self.ids)
        self._warned_255 = False  # labelled masks of only 0/255: said once per dataset

    # -- samples -------------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> Sample:
        i = self._check_index(index)
        image = read_rgb(self.image_paths[i])
        mask = self._read_mask(i, (image.shape[1], image.shape[0]))
        meta = {"id": self.ids[i], "image_path": str(self.image_paths[i]), "mask_path": str(self.mask_paths[i]),
                "dataset": self.name, "split": self.split}
        return Sample(image, mask, meta)

    def mask_at(self, index: int) -> np.ndarray:
        """The mask alone; the image is only opened for its header (its size), not decoded."""
        i = self._check_index(index)
        return self._read_mask(i, image_size(self.image_paths[i]))

    def _read_mask(self, i: int, image_wh: tuple[int, int]) -> np.ndarray:
        path = self.mask_paths[i]
        raw = read_mask(path)
        if (raw.shape[1], raw.shape[0]) != image_wh:
            raise DataError(
                f"Mask {path} is {raw.shape[1]}×{raw.shape[0]} (W×H) but its image {self.image_paths[i]} is "
                f"{image_wh[0]}×{image_wh[1]}. A mask must have exactly its image's size; re-export one of them."
            )
        if self.labels_path is None:
            return _binary_mask(raw, path)
        mask = _label_mask(raw, path, len(self.classes), self.labels_path)
        if not self._warned_255 and (mask == IGNORE_INDEX).any() and ((mask == 0) | (mask == IGNORE_INDEX)).all():
            self._warned_255 = True
            import warnings

            warnings.warn(f"Mask {path} holds only 0 and {IGNORE_INDEX}, but {self.labels_path} makes the dataset "
                          f"labelled, where {IGNORE_INDEX} means ignore (never scored or trained on). If "
                          f"{IGNORE_INDEX} marks the object, remove {self.labels_path} (binary 0/255 masks) or store "
                          f"class indices (1 = {self.classes[1] if len(self.classes) > 1 else 'first class'}). Said "
                          f"once per dataset.", UserWarning, stacklevel=3)
        return mask


def folder(split: str = "train", *, root: str | os.PathLike | None = None, **options) -> ImageMaskFolder:
    """Any folder in the adaptsam layout (images/, masks/, splits/, optional labels.txt); pass root=PATH."""
    if root is None:
        raise DataError(
            "The 'folder' dataset needs the dataset folder: pass root=PATH (or --data PATH on the command line), "
            f"where PATH holds {LAYOUT}."
        )
    return ImageMaskFolder(root, split, **options)


# -- reading the listing ---------------------------------------------------------------------------------
def _check_layout(root: Path) -> None:
    if not root.exists():
        raise DataError(f"Dataset folder {root} does not exist. Expected a folder holding {LAYOUT}.")
    if not root.is_dir():
        raise DataError(f"Dataset path {root} is a file, not a folder. Expected a folder holding {LAYOUT}.")
    missing = [sub for sub in ("images", "masks") if not (root / sub).is_dir()]  # no splits/: auto split
    if missing:
        raise DataError(
            f"Dataset folder {root} is not in the adaptsam layout: missing {', '.join(f'{m}/' for m in missing)}. "
            f"Expected {LAYOUT}. LabelMe annotations can be converted with adaptsam.data.import_labelme."
        )


def available_splits(root: str | os.PathLike) -> list[str]:
    """Names of the split files in ``root/splits`` (``["test", "train"]`` for kvasir_seg)."""
    if not Path(root, "splits").is_dir():
        from adaptsam.data.split import auto_split
        return sorted(auto_split(root).splits)
    return sorted(p.stem for p in Path(root, "splits").glob("*.txt") if p.is_file())


def read_split(root: str | os.PathLike, split: str) -> list[str]:
    """Ids listed in ``root/splits/<split>.txt``: one per line, blank lines skipped, no duplicates."""
    path = Path(root, "splits", f"{split}.txt")
    if not path.parent.is_dir() and split in available_splits(root):  # no splits/: the drawn, announced split
        from adaptsam.data.split import auto_split
        return list(auto_split(root).splits[split])
    if not path.is_file():
        found = available_splits(root)
        listing = ", ".join(found) if found else "none"
        raise DataError(f"Unknown split {split!r} for {root}: there is no {path}. Available splits: {listing}.")
    ids: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        item = line.strip()
        if not item:
            continue
        if item in first_line:
            raise DataError(f"Split file {path} lists id {item!r} twice (lines {first_line[item]} and {number}).")
        first_line[item] = number
        ids.append(item)
    if not ids:
        raise DataError(f"Split file {path} is empty: expected one image id per line (the stem of images/<id>.jpg).")
    return ids


def _match_files(root: Path, split_path: Path, ids: list[str]) -> tuple[list[Path], list[Path]]:
    """Image and mask path of every id, from one listing of each folder (no per-file stat calls)."""
    images: dict[str, list[str]] = {}
    with os.scandir(root / "images") as entries:
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix.lower() in IMAGE_SUFFIXES:
                images.setdefault(stem, []).append(entry.name)
    with os.scandir(root / "masks") as entries:
        masks = {os.path.splitext(e.name)[0]: e.name for e in entries if e.name.lower().endswith(MASK_SUFFIX)}

    missing = [i for i in ids if i not in images]
    if missing:
        raise DataError(
            f"{len(missing)} id(s) listed in {split_path} have no image in {root / 'images'}: "
            f"{format_list(missing)}. Expected images/<id> with one of {', '.join(IMAGE_SUFFIXES)}."
        )
    image_paths, mask_paths = [], []
    for item in ids:
        if len(images[item]) > 1:
            found = ", ".join(str(root / "images" / n) for n in sorted(images[item]))
            raise DataError(f"Id {item!r} has more than one image ({found}); keep exactly one.")
        image_path = root / "images" / images[item][0]
        if item not in masks:
            raise DataError(
                f"Image {image_path} has no mask: expected {root / 'masks' / (item + MASK_SUFFIX)} "
                "(single-channel PNG, same size as the image)."
            )
        image_paths.append(image_path)
        mask_paths.append(root / "masks" / masks[item])
    return image_paths, mask_paths


# -- reading pixels ----------------------------------------------------------------------------------------
def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 H×W×3 RGB (grayscale and palette are expanded, alpha is dropped).

    Images of more than 8 bits (16-bit or 32-bit integer, float: PIL modes ``I;16*``, ``I``, ``F``) are
    scaled to 8 bits by their own percentiles (see :func:`to_8bit`), never clipped at 255; the first such
    image of a process is said in a warning.
    """
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in HIGH_DEPTH_MODES:
                values = np.asarray(img)
                _warn_high_depth(path, img.mode, values)
                grey = to_8bit(values)
                return np.repeat(grey[..., None], 3, axis=2)
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8).copy()
    except _READ_ERRORS as exc:
        raise DataError(f"Cannot read image {path}: {type(exc).__name__}: {exc}") from exc


HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
PERCENTILES = (0.5, 99.5)
"""High-depth images map the 0.5th percentile to 0 and the 99.5th to 255 (robust to a few hot pixels)."""
_warned_high_depth: list[str] = []


def to_8bit(values: np.ndarray, percentiles: tuple[float, float] = PERCENTILES) -> np.ndarray:
    """uint8 from any-depth values: linear map of the ``percentiles`` (of the finite values) to 0 and 255.

    Values beyond the percentiles saturate; a constant image gives zeros. Unlike a cast or PIL's
    ``convert``, a 16-bit image whose values all exceed 255 keeps its contrast instead of turning white.
    """
    data = np.asarray(values, dtype=np.float64)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return np.zeros(data.shape, dtype=np.uint8)
    low, high = np.percentile(finite, percentiles)
    if high <= low:
        low, high = float(finite.min()), float(finite.max())
    if high <= low:
        return np.zeros(data.shape, dtype=np.uint8)
    scaled = (np.nan_to_num(data, nan=low, posinf=high, neginf=low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _warn_high_depth(path: str | os.PathLike, mode: str, values: np.ndarray) -> None:
    if _warned_high_depth:
        return
    _warned_high_depth.append(str(path))
    import warnings

    warnings.warn(f"Image {path} has more than 8 bits per pixel (PIL mode {mode}, values "
                  f"{np.nanmin(values):g}..{np.nanmax(values):g}): it is scaled to 8 bits by its "
                  f"{PERCENTILES[0]:g}th..{PERCENTILES[1]:g}th percentiles, never clipped; other such images are "
                  f"scaled the same way (said once).", UserWarning, stacklevel=3)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except _READ_ERRORS as exc:
        raise DataError(f"Cannot read image {path}: {type(exc).__name__}: {exc}") from exc


def _binary_mask(raw: np.ndarray, path: Path) -> np.ndarray:
    # elementwise tests first: ~10× faster than np.unique/bincount on a 2-megapixel mask; values only on error
    if ((raw == 0) | (raw == 255)).all():
        return (raw == 255).astype(np.int64)
    if ((raw == 0) | (raw == 1)).all():
        return raw.astype(np.int64)
    values = np.unique(raw).tolist()
    raise DataError(
        f"Mask {path} has values {format_list(map(str, values))}, but a dataset without labels.txt is "
        "binary: masks must hold only 0 and 255 (or 0 and 1). Threshold the mask (e.g. value > 127 → 255), or add "
        f"{path.parent.parent / 'labels.txt'} if the values are class indices."
    )


def _label_mask(raw: np.ndarray, path: Path, num_classes: int, labels_path: Path) -> np.ndarray:
    valid = ((raw >= 0) & (raw < num_classes)) | (raw == IGNORE_INDEX)
    if not valid.all():
        bad = np.unique(raw[~valid]).tolist()
        raise DataError(
            f"Mask {path} has values {format_list(map(str, bad))} that are not classes: {labels_path} defines "
            f"0..{num_classes - 1} and {IGNORE_INDEX} means ignore. Fix the mask or add the classes to {labels_path}."
        )
    return raw.astype(np.int64)
