"""Import LabelMe annotations (one JSON per image) into adaptsam's folder layout.

The result is a dataset like the shared ones: ``images/``, ``masks/``, ``labels.txt`` and
``splits/{train,test}.txt``, which ``ImageMaskFolder`` (``--data PATH``) opens directly.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from adaptsam.data.folder import IMAGE_SUFFIXES
from adaptsam.data.types import BACKGROUND, IGNORE_INDEX
from adaptsam.errors import ConfigError, DataError

SHAPE_TYPES = ("polygon", "rectangle")
_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class _Annotation:
    """One parsed JSON file: where its image comes from and its shapes, checked, in file order."""

    json_path: Path
    stem: str
    image_file: Path | None  # the image on disk, copied as is
    image_data: bytes | None  # or the embedded image, re-encoded as PNG
    size: tuple[int, int]  # (height, width)
    shapes: tuple[tuple[str, np.ndarray], ...]  # (label, polygon vertices N×2 as x, y)


def import_labelme(src: str | os.PathLike, dst: str | os.PathLike, *, labels: list[str] | None = None,
                   test_fraction: float = 0.2, seed: int = 0) -> Path:
    """Convert a folder of LabelMe ``*.json`` files into the folder layout at ``dst``; returns ``dst``.

    Every file is read and checked before anything is written, so a bad annotation leaves no half-built
    dataset behind.

    - Images: ``images/<json stem>.<ext>`` is a byte copy of the file named by ``imagePath`` (relative to
      the JSON); when that file is missing, the embedded ``imageData`` is decoded and saved as PNG.
    - Labels: ``labels.txt`` is ``0 background`` then ``labels`` in the given order (index 1, 2, …), or,
      without ``labels``, the sorted unique labels of all files. A shape labelled "background" (any case)
      paints 0, which lets an annotator cut holes.
    - Masks: ``masks/<stem>.png``, 0 = background, label i → its index in ``labels.txt``. Rasterisation
      rule: pixel (column c, row r) belongs to a polygon iff its centre (c + 0.5, r + 0.5) is inside the
      polygon by the even–odd rule, with PNPOLY's tie conventions: an edge (x0, y0)–(x1, y1) is crossed by
      the rows whose centre y satisfies min(y0, y1) <= y < max(y0, y1), and a crossing counts only if it is
      strictly right of the centre (so a centre exactly on a left edge is inside, on a right edge outside).
      Shapes are painted in file order; later shapes overwrite
      earlier ones. A ``rectangle`` (two corner points) is the axis-aligned polygon through them; a shape
      without ``shape_type`` is a polygon. Other shape types are refused.
    - Splits: ids shuffled with ``seed``; ``round(test_fraction × n)`` go to ``splits/test.txt`` (written
      only when non-empty), the rest (at least one) to ``splits/train.txt``.
    """
    src, dst = Path(src), Path(dst)
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"Expected test_fraction in [0, 1) (the share of images in splits/test.txt), got "
                          f"{test_fraction}.")
    if not src.is_dir():
        raise DataError(f"LabelMe folder {src} does not exist or is not a folder: expected a folder of *.json files.")
    json_paths = sorted(src.glob("*.json"))
    if not json_paths:
        raise DataError(f"LabelMe folder {src} holds no *.json files.")
    _check_destination(dst)

    annotations = [_parse(path) for path in json_paths]
    class_names = _class_names(annotations, labels)
    index_of = {name: i for i, name in enumerate(class_names)}

    for sub in ("images", "masks", "splits"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    for ann in annotations:
        _write_image(ann, dst / "images")
        mask = np.zeros(ann.size, dtype=np.uint8)
        for label, vertices in ann.shapes:
            value = 0 if label.lower() == BACKGROUND else index_of[label]
            mask[polygon_mask(vertices, *ann.size)] = value
        Image.fromarray(mask, "L").save(dst / "masks" / f"{ann.stem}.png")
    (dst / "labels.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(class_names)), encoding="utf-8")

    stems = [ann.stem for ann in annotations]
    order = np.random.default_rng(seed).permutation(len(stems))
    n_test = min(round(test_fraction * len(stems)), len(stems) - 1)
    test = sorted(stems[i] for i in order[:n_test])
    train = sorted(stems[i] for i in order[n_test:])
    (dst / "splits" / "train.txt").write_text("".join(f"{s}\n" for s in train), encoding="utf-8")
    if test:
        (dst / "splits" / "test.txt").write_text("".join(f"{s}\n" for s in test), encoding="utf-8")
    return dst


def polygon_mask(vertices: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean H×W mask of the pixels whose centre lies inside the polygon (even–odd rule).

    Vectorised crossing test: for every pixel row, each edge that straddles the row's centre line
    (half-open in y) crosses it at some x; a pixel centre is inside iff an odd number of those crossings
    lie strictly to its right. Crossings are counted per row with one bincount and a reversed cumulative
    sum, so the cost is O(rows × edges + rows × columns) with no Python loop over pixels.
    """
    pts = np.asarray(vertices, dtype=np.float64)
    inside = np.zeros((height, width), dtype=bool)
    if len(pts) < 3 or height == 0 or width == 0:
        return inside
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    first = max(0, math.floor(pts[:, 1].min() - 0.5))  # only rows whose centre is within the y-range
    last = min(height, math.ceil(pts[:, 1].max() + 0.5))
    if first >= last:
        return inside
    centre_y = np.arange(first, last, dtype=np.float64)[:, None] + 0.5
    straddles = (y0 > centre_y) != (y1 > centre_y)  # rows × edges
    dy = np.where(y1 == y0, 1.0, y1 - y0)  # horizontal edges never straddle; avoid dividing by 0
    crossing_x = (x1 - x0) * (centre_y - y0) / dy + x0
    # pixel c has this crossing strictly to its right iff c + 0.5 < x  ⇔  c < ceil(x - 0.5)
    first_not_left = np.clip(np.ceil(crossing_x - 0.5), 0, width).astype(np.int64)
    rows, edges = np.nonzero(straddles)
    flat = rows * (width + 1) + first_not_left[rows, edges]
    counts = np.bincount(flat, minlength=(last - first) * (width + 1)).reshape(last - first, width + 1)
    to_the_right = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]  # [:, c] = crossings with bound >= c
    inside[first:last] = to_the_right[:, 1:] % 2 == 1
    return inside


# -- parsing ---------------------------------------------------------------------------------------------------
def _parse(path: Path) -> _Annotation:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"Cannot read LabelMe file {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DataError(f"LabelMe file {path} has no 'shapes' list: expected a LabelMe JSON annotation.")

    image_file, image_data, size = _locate_image(path, data)
    shapes = tuple(_parse_shape(path, number, shape) for number, shape in enumerate(data["shapes"]))
    return _Annotation(path, path.stem, image_file, image_data, size, shapes)


def _locate_image(path: Path, data: dict) -> tuple[Path | None, bytes | None, tuple[int, int]]:
    """The image on disk if it exists, else the embedded data; checks the size against the JSON."""
    image_path = data.get("imagePath")
    image_file = (path.parent / str(image_path).replace("\\", "/")) if image_path else None
    image_data = None
    if image_file is not None and image_file.is_file():
        source, opener = str(image_file), lambda: Image.open(image_file)
    elif data.get("imageData"):
        try:
            image_data = base64.b64decode(data["imageData"], validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise DataError(f"LabelMe file {path} has an imageData field that is not valid base64: {exc}") from exc
        image_file = None
        source, opener = f"the imageData embedded in {path}", lambda: Image.open(io.BytesIO(image_data))
    else:
        expected = str(image_file) if image_file is not None else "(no imagePath given)"
        raise DataError(f"LabelMe file {path} refers to image {expected}, which does not exist, and has no "
                        "imageData. Put the image there or save the JSON with image data.")
    try:
        with opener() as img:
            width, height = img.size
    except _READ_ERRORS as exc:
        raise DataError(f"Cannot read the image of {path} ({source}): {type(exc).__name__}: {exc}") from exc
    declared = (data.get("imageHeight"), data.get("imageWidth"))
    if None not in declared and tuple(declared) != (height, width):
        raise DataError(f"LabelMe file {path} says the image is {declared[1]}×{declared[0]} (W×H), but "
                        f"{source} is {width}×{height}.")
    return image_file, image_data, (height, width)


def _parse_shape(path: Path, number: int, shape: object) -> tuple[str, np.ndarray]:
    if not isinstance(shape, dict):
        raise DataError(f"LabelMe file {path}: shape #{number} is not an object.")
    label = str(shape.get("label", "")).strip()
    kind = shape.get("shape_type") or "polygon"
    where = f"LabelMe file {path}: shape #{number} (label {label!r}, shape_type {kind!r})"
    if not label:
        raise DataError(f"{where} has no label.")
    if not label.isprintable():  # a newline would write an extra line (a phantom class) into labels.txt
        raise DataError(f"{where}: the label contains a line break or another control character; expected a "
                        f"single-line name. Rename the shape in LabelMe.")
    if kind not in SHAPE_TYPES:
        raise DataError(f"{where} is not supported: expected one of {', '.join(SHAPE_TYPES)}. "
                        "Convert it to a polygon in LabelMe, or delete it.")
    try:
        points = np.asarray(shape.get("points"), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where} has points that are not numbers: {exc}") from exc
    if points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
        raise DataError(f"{where} has malformed points: expected a list of [x, y] pairs.")
    if kind == "rectangle":
        if len(points) != 2:
            raise DataError(f"{where} has {len(points)} points: a rectangle has exactly 2 (opposite corners).")
        (xa, ya), (xb, yb) = points
        points = np.array([[xa, ya], [xb, ya], [xb, yb], [xa, yb]])
    elif len(points) < 3:
        raise DataError(f"{where} has {len(points)} points: a polygon needs at least 3.")
    return label, points


def _class_names(annotations: list[_Annotation], labels: list[str] | None) -> list[str]:
    used = {label for ann in annotations for label, _ in ann.shapes if label.lower() != BACKGROUND}
    if labels is None:
        names = sorted(used)
    else:
        names = [str(name).strip() for name in labels]
        for name in names:
            if not name or not name.isprintable():
                raise ConfigError(f"Expected non-empty single-line label names, got {name!r}.")
            if name.lower() == BACKGROUND:
                raise ConfigError("labels must not contain 'background': index 0 is reserved for it.")
        if len(set(names)) != len(names):
            raise ConfigError(f"Expected distinct label names, got {names}.")
        known = set(names)
        for ann in annotations:
            for label, _ in ann.shapes:
                if label.lower() != BACKGROUND and label not in known:
                    raise DataError(f"LabelMe file {ann.json_path} uses label {label!r}, which is not in labels "
                                    f"({', '.join(names)}). Add it to labels or fix the annotation.")
    if len(names) >= IGNORE_INDEX:
        raise DataError(f"{len(names)} labels do not fit in 8-bit masks: at most {IGNORE_INDEX - 1} classes.")
    return [BACKGROUND, *names]


# -- writing ---------------------------------------------------------------------------------------------------
def _check_destination(dst: Path) -> None:
    if dst.exists() and not dst.is_dir():
        raise DataError(f"Destination {dst} is a file: expected an empty or new folder.")
    if dst.is_dir() and any(dst.iterdir()):
        raise DataError(f"Destination {dst} is not empty: choose a new folder so no existing dataset is overwritten.")


def _write_image(ann: _Annotation, folder: Path) -> None:
    if ann.image_file is not None and ann.image_file.suffix.lower() in IMAGE_SUFFIXES:
        shutil.copyfile(ann.image_file, folder / f"{ann.stem}{ann.image_file.suffix.lower()}")
        return
    source = ann.image_file if ann.image_file is not None else io.BytesIO(ann.image_data or b"")
    try:
        with Image.open(source) as img:
            img.load()
            (img if img.mode in ("RGB", "L") else img.convert("RGB")).save(folder / f"{ann.stem}.png")
    except _READ_ERRORS as exc:
        raise DataError(f"Cannot decode the image of {ann.json_path}: {type(exc).__name__}: {exc}") from exc
