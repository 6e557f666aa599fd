"""The folder layout itself (DESIGN.md §5): which files count, and reading its ``labels.txt`` and mask files.

Both :class:`~adaptsam.data.folder.ImageMaskFolder` (one split of a folder) and
:mod:`adaptsam.data.split` (drawing a split for a folder that has none) need these; they live here, below
both, so the folder can ask the split drawer for its ids without the two importing each other.
``adaptsam.data.folder`` re-exports every public name, where users import them from.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from adaptsam.data.types import IGNORE_INDEX
from adaptsam.errors import DataError, format_list

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_SUFFIX = ".png"
LAYOUT = ("images/<id>.<jpg|png>, masks/<id>.png, splits/<split>.txt (one id per line) "
          "and optionally labels.txt (lines 'index name')")

# what PIL raises for files it cannot decode: unknown format, truncated data, absurd sizes
_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def read_labels(path: str | os.PathLike) -> tuple[str, ...]:
    """Class names indexed by mask value from a ``labels.txt`` of lines ``index name``.

    Indices must be exactly 0..N-1 (in any order) so that every mask value has a name; 255 is the
    ignore index and cannot be a class.
    """
    path = Path(path)
    names: dict[int, str] = {}
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        where = f"{path}, line {number} ({line.strip()!r})"
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"Malformed {where}: expected 'index name', e.g. '1 polyp'.")
        index, name = int(parts[0]), parts[1].strip()
        if index >= IGNORE_INDEX:
            raise DataError(f"Malformed {where}: class index must be below {IGNORE_INDEX} (the ignore index).")
        if index in names:
            raise DataError(f"Malformed {where}: index {index} already names {names[index]!r}.")
        names[index] = name
    if not names:
        raise DataError(f"Labels file {path} is empty: expected lines 'index name', e.g. '0 background'.")
    gaps = sorted(set(range(max(names) + 1)) - set(names))
    if gaps:
        raise DataError(
            f"Labels file {path} has no line for index {format_list(map(str, gaps))}: indices must run 0..N-1 "
            "so that every mask value has a class name."
        )
    return tuple(names[i] for i in range(len(names)))


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask file's raw values as an H×W integer array.

    Palette PNGs give their indices (the VOC convention). An RGB(A) mask is accepted only when its
    colour channels are equal (a grey mask saved as RGB); anything else is an error, since colours are
    not class indices.
    """
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            values = np.asarray(img)
    except _READ_ERRORS as exc:
        raise DataError(f"Cannot read mask {path}: {type(exc).__name__}: {exc}") from exc
    if values.ndim == 3:
        colour = values[..., :3] if values.shape[2] >= 3 else values[..., :1]
        if not (colour == colour[..., :1]).all():
            raise DataError(
                f"Mask {path} is a colour image (mode {mode}): expected a single-channel PNG of class indices. "
                "Convert it, e.g. PIL's Image.open(p).convert('L') for a grey mask."
            )
        values = colour[..., 0]
    if values.dtype == bool:
        values = values.astype(np.uint8)
    if not np.issubdtype(values.dtype, np.integer):
        raise DataError(f"Mask {path} holds {values.dtype} values (mode {mode}): expected integer class indices.")
    return values


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read {path}: {type(exc).__name__}: {exc}") from exc
