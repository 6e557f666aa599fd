"""Import COCO instance annotations (polygons and RLE) into adaptsam's folder layout.

``import_coco(["train.json", "val.json"], images_dir, dst)`` writes ``images/``, ``masks/``, ``labels.txt``
and ``splits/``, which ``ImageMaskFolder`` (``--data PATH``) opens directly. Decoding uses ``pycocotools``
(``pip install adaptsam[coco]``), so polygons rasterise exactly as in COCO's own evaluation.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from adaptsam.data.folder import IMAGE_SUFFIXES
from adaptsam.data.types import BACKGROUND, IGNORE_INDEX
from adaptsam.errors import ConfigError, DataError

CLASS_MODES = ("category", "supercategory", "binary")
_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class _Instance:
    ann_id: Any
    category: str  # category name
    crowd: bool
    rle: dict  # compressed RLE (pycocotools): a few bytes per instance, decoded only when its mask is written
    area: int  # pixels


@dataclass(frozen=True)
class _Image:
    source: Path  # the COCO file it came from
    stem: str
    path: Path
    size: tuple[int, int]  # (height, width)
    instances: tuple[_Instance, ...]


def _pycocotools_mask() -> Any:
    try:
        from pycocotools import mask
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("COCO import needs pycocotools: pip install 'adaptsam[coco]' (or pip install "
                        "pycocotools).") from exc
    return mask


def split_name(path: str | os.PathLike) -> str:
    """The split a COCO file holds, from its name: ``instances_val2017.json`` → ``val``, ``train.json`` → ``train``."""
    stem = Path(path).stem.lower()
    stem = re.sub(r"^instances_", "", stem)
    return re.sub(r"\d+$", "", stem) or stem


def import_coco(instances: str | os.PathLike | list[str | os.PathLike], images_dir: str | os.PathLike,
                dst: str | os.PathLike, *, classes: str = "category", categories: list[str] | None = None,
                min_area: int = 0, drop_empty: bool = False, train_fraction: float = 0.8, seed: int = 0) -> Path:
    """Convert COCO instances JSON file(s) into the folder layout at ``dst``; returns ``dst``.

    Everything is read and checked before anything is written, so a bad annotation leaves no half-built
    dataset behind; each error names the COCO file, the annotation id and what was expected. Instances are
    held as compressed RLE until their image's mask is written, so memory stays small for all of COCO.

    - Classes (``classes``): ``category`` → ``labels.txt`` is ``0 background`` then the categories in the
      order of the file's ``categories`` list; ``supercategory`` → the supercategories, in order of first
      appearance there; ``binary`` → ``0 background``, ``1 foreground``. ``categories`` keeps only the
      named categories (in the given order for ``category``); annotations of the others are left out.
    - Masks: ``masks/<id>.png``. Instances are painted largest first, so where two overlap **the smaller
      instance is on top** (ties: lower annotation id first, later ids on top). ``iscrowd`` regions are 255
      (ignore) wherever no non-crowd instance covers them. Non-crowd instances with fewer than ``min_area``
      pixels are left out. Polygons and RLE (compressed or not) are decoded with pycocotools.
    - Images: ``images[].file_name`` must be a relative path inside ``images_dir`` (no ``..``, not absolute);
      it is looked up as ``images_dir/file_name``, then ``images_dir/<file stem>/file_name`` (COCO's
      ``train2017/`` folders). The id is the file name's stem (sub-folders joined with ``_``); the image is
      copied byte for byte. Images with no kept annotation are kept as background, or left out with
      ``drop_empty``.
    - Splits: several files → one split each, named after the file (``instances_val2017.json`` → ``val``);
      one file → a seeded ``train_fraction`` train/test split (``adaptsam.data.split``, stratified).
    """
    paths = [Path(p) for p in (instances if isinstance(instances, list | tuple) else [instances])]
    images_dir, dst = Path(images_dir), Path(dst)
    if classes not in CLASS_MODES:
        raise ConfigError(f"Expected --classes to be one of {', '.join(CLASS_MODES)}, got {classes!r}.")
    if min_area < 0:
        raise ConfigError(f"Expected --min-area >= 0 pixels, got {min_area}.")
    if not paths:
        raise ConfigError("Expected at least one COCO instances JSON file.")
    if not images_dir.is_dir():
        raise DataError(f"COCO images folder {images_dir} does not exist or is not a folder.")
    names = [split_name(p) for p in paths]
    if len(set(names)) != len(names):
        raise DataError(f"COCO files {', '.join(map(str, paths))} map to splits {', '.join(names)}: each file "
                        "must name a different split (e.g. train.json, val.json).")
    from adaptsam.data.labelme import _check_destination

    _check_destination(dst)

    documents = [(path, _load(path)) for path in paths]
    cats = _categories(documents, categories)
    class_names, class_of = _class_table(cats, classes, categories)
    per_split: dict[str, list[_Image]] = {}
    seen: dict[str, Path] = {}
    for (path, doc), name in zip(documents, names):
        images = _images(path, doc, images_dir, cats, class_of, min_area, seen)
        per_split[name] = [im for im in images if im.instances or not drop_empty]

    mask_api = _pycocotools_mask()
    for sub in ("images", "masks"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    stratify: dict[str, set[int]] = {}
    for images in per_split.values():
        for im in images:
            shutil.copyfile(im.path, dst / "images" / f"{im.stem}{im.path.suffix.lower()}")
            mask = paint(im.size, [(_decode(i.rle, mask_api), class_of[i.category], i.crowd, i.ann_id)
                                   for i in im.instances])
            Image.fromarray(mask, "L").save(dst / "masks" / f"{im.stem}.png")
            stratify[im.stem] = {int(v) for v in np.unique(mask) if 0 < v < IGNORE_INDEX}
    (dst / "labels.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(class_names)), encoding="utf-8")

    from adaptsam.data.split import Split, SplitConfig, draw_split, write_split

    if len(per_split) == 1:
        config = SplitConfig(train=train_fraction, seed=seed)
        split = draw_split(list(stratify), config, stratify if len(class_names) > 2 else None)
    else:
        split = Split({n: tuple(sorted(im.stem for im in ims)) for n, ims in per_split.items() if ims},
                      SplitConfig())
    write_split(dst, split)
    return dst


def paint(size: tuple[int, int], instances: list[tuple[np.ndarray, int, bool, Any]]) -> np.ndarray:
    """The class-index mask of one image: crowd → 255 first, then instances largest first (smaller on top)."""
    mask = np.zeros(size, dtype=np.uint8)
    for region, _, crowd, _ in instances:
        if crowd:
            mask[region] = IGNORE_INDEX
    solid = [(m, v, i) for m, v, crowd, i in instances if not crowd]
    for region, value, _ in sorted(solid, key=lambda t: (-int(t[0].sum()), _sort_key(t[2]))):
        mask[region] = value
    return mask


def _sort_key(ann_id: Any) -> tuple:
    return (0, ann_id, "") if isinstance(ann_id, int | float) else (1, 0, str(ann_id))


# -- reading ---------------------------------------------------------------------------------------------------
def _load(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"Cannot read COCO file {path}: {type(exc).__name__}: {exc}") from exc
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
            raise DataError(f"COCO file {path} has no {key!r} list: expected a COCO instances JSON "
                            "(keys images, annotations, categories).")
    return doc


def _categories(documents: list[tuple[Path, dict]], wanted: list[str] | None) -> dict[Any, dict]:
    """id → category (name, supercategory), identical across files, in the first file's order."""
    first_path, first = documents[0]
    cats: dict[Any, dict] = {}
    for number, cat in enumerate(first["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or not str(cat.get("name", "")).strip():
            raise DataError(f"COCO file {first_path}: categories[{number}] is {cat!r}: expected an object with "
                            "'id' and 'name'.")
        if cat["id"] in cats:
            raise DataError(f"COCO file {first_path}: category id {cat['id']} is listed twice.")
        cats[cat["id"]] = {"name": str(cat["name"]).strip(),
                           "supercategory": str(cat.get("supercategory") or cat["name"]).strip()}
    for path, doc in documents[1:]:
        other = {c.get("id"): str(c.get("name", "")).strip() for c in doc["categories"] if isinstance(c, dict)}
        if other != {k: v["name"] for k, v in cats.items()}:
            raise DataError(f"COCO files {first_path} and {path} define different categories: expected the same "
                            "id → name table in every file of one dataset.")
    if wanted is not None:
        known = [c["name"] for c in cats.values()]
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise ConfigError(f"--categories names {', '.join(unknown)}, which {first_path} does not define; "
                              f"its categories: {', '.join(known)}.")
    return cats


def _class_table(cats: dict[Any, dict], mode: str, wanted: list[str] | None) -> tuple[list[str], dict[str, int]]:
    """(class names with background first, category name → class index) for the kept categories."""
    names = [c["name"] for c in cats.values()]
    kept = list(wanted) if wanted is not None else names
    if mode == "binary":
        return [BACKGROUND, "foreground"], {n: 1 for n in kept}
    if mode == "category":
        class_names = [BACKGROUND, *kept]
        class_of = {n: i + 1 for i, n in enumerate(kept)}
    else:
        super_of = {c["name"]: c["supercategory"] for c in cats.values()}
        supers = list(dict.fromkeys(super_of[n] for n in names if n in kept))
        class_names = [BACKGROUND, *supers]
        class_of = {n: supers.index(super_of[n]) + 1 for n in kept}
    if len(class_names) > IGNORE_INDEX:
        raise DataError(f"{len(class_names) - 1} classes do not fit in 8-bit masks: at most {IGNORE_INDEX - 1}; "
                        "use --categories, --classes supercategory or --classes binary.")
    return class_names, class_of


def _images(path: Path, doc: dict, images_dir: Path, cats: dict[Any, dict], class_of: dict[str, int],
            min_area: int, seen: dict[str, Path]) -> list[_Image]:
    mask_api = _pycocotools_mask()
    records: dict[Any, tuple[str, Path, tuple[int, int]]] = {}
    for number, entry in enumerate(doc["images"]):
        where = f"COCO file {path}: images[{number}]"
        if not isinstance(entry, dict) or "id" not in entry or not isinstance(entry.get("file_name"), str):
            raise DataError(f"{where} is {entry!r}: expected an object with 'id', 'file_name', 'height', 'width'.")
        if entry["id"] in records:
            raise DataError(f"{where}: image id {entry['id']} is listed twice.")
        image_path = _resolve(images_dir, entry["file_name"], path, where)
        stem = "_".join(PurePosixPath(entry["file_name"].replace("\\", "/")).with_suffix("").parts)
        if stem in seen:
            raise DataError(f"{where}: file name {entry['file_name']!r} gives id {stem!r}, already used by "
                            f"{seen[stem]}: rename one of the images.")
        seen[stem] = image_path
        records[entry["id"]] = (stem, image_path, _size(entry, image_path, where))

    found: dict[Any, list[_Instance]] = {k: [] for k in records}
    for number, ann in enumerate(doc["annotations"]):
        ann_id = ann.get("id", f"#{number}") if isinstance(ann, dict) else f"#{number}"
        where = f"COCO file {path}: annotation id {ann_id}"
        if not isinstance(ann, dict):
            raise DataError(f"{where} is not an object: expected image_id, category_id, segmentation, iscrowd.")
        if ann.get("image_id") not in records:
            raise DataError(f"{where} has image_id {ann.get('image_id')!r}, which is not in the file's images.")
        if ann.get("category_id") not in cats:
            raise DataError(f"{where} has category_id {ann.get('category_id')!r}, which is not in the file's "
                            f"categories ({', '.join(map(str, cats))}).")
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1, True, False):
            raise DataError(f"{where} has iscrowd {crowd!r}: expected 0 or 1.")
        name = cats[ann["category_id"]]["name"]
        if name not in class_of:
            continue  # not among --categories
        size = records[ann["image_id"]][2]
        rle = segmentation_rle(ann.get("segmentation"), size, where, mask_api)
        area = int(mask_api.area(rle))
        if not crowd and area < max(min_area, 1):
            continue
        found[ann["image_id"]].append(_Instance(ann_id, name, bool(crowd), rle, area))
    return [_Image(path, stem, p, size, tuple(found[k])) for k, (stem, p, size) in records.items()]


def _resolve(images_dir: Path, file_name: str, path: Path, where: str) -> Path:
    name = PurePosixPath(file_name.replace("\\", "/"))
    if name.is_absolute() or ".." in name.parts or re.match(r"^[A-Za-z]:", file_name) or not name.parts:
        raise DataError(f"{where} has file_name {file_name!r}: expected a relative path inside {images_dir} "
                        "(absolute paths and '..' are refused).")
    if name.suffix.lower() not in IMAGE_SUFFIXES:
        raise DataError(f"{where} has file_name {file_name!r}: expected an image ({', '.join(IMAGE_SUFFIXES)}).")
    candidates = [images_dir.joinpath(*name.parts), images_dir / path.stem / Path(*name.parts),
                  images_dir / re.sub(r"^instances_", "", path.stem) / Path(*name.parts)]
    root = images_dir.resolve()
    for candidate in candidates:
        if candidate.is_file() and candidate.resolve().is_relative_to(root):
            return candidate
    raise DataError(f"{where} names image {file_name!r}, which is not in {images_dir} (looked for "
                    f"{', '.join(str(c) for c in dict.fromkeys(candidates))}).")


def _size(entry: dict, image_path: Path, where: str) -> tuple[int, int]:
    try:
        with Image.open(image_path) as img:
            width, height = img.size
    except _READ_ERRORS as exc:
        raise DataError(f"Cannot read image {image_path} ({where}): {type(exc).__name__}: {exc}") from exc
    declared = (entry.get("height"), entry.get("width"))
    if None not in declared and tuple(declared) != (height, width):
        raise DataError(f"{where} says {entry['file_name']} is {declared[1]}×{declared[0]} (W×H), but "
                        f"{image_path} is {width}×{height}.")
    return height, width


def decode_segmentation(seg: Any, size: tuple[int, int], where: str, mask_api: Any = None) -> np.ndarray:
    """Bool H×W mask of a COCO ``segmentation``: a list of polygons, or an RLE (counts as a list or a string)."""
    mask_api = mask_api or _pycocotools_mask()
    return _decode(segmentation_rle(seg, size, where, mask_api), mask_api)


def _decode(rle: dict, mask_api: Any) -> np.ndarray:
    with warnings.catch_warnings():  # pycocotools 2.0.x under numpy 2: a harmless __array__(copy=) notice
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_api.decode(rle).astype(bool)


def segmentation_rle(seg: Any, size: tuple[int, int], where: str, mask_api: Any) -> dict:
    """A COCO ``segmentation`` checked and converted to pycocotools' compressed RLE (nothing decoded yet)."""
    height, width = size
    if isinstance(seg, list):
        if not seg:
            raise DataError(f"{where} has an empty segmentation: expected polygons [[x0, y0, x1, y1, ...], ...] "
                            "or an RLE {'size': [h, w], 'counts': ...}.")
        polygons = []
        for k, poly in enumerate(seg):
            ok = isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0 and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in poly)
            if not ok:
                raise DataError(f"{where}: polygon {k} is {str(poly)[:80]}: expected a flat list of at least 3 "
                                "x, y pairs of numbers.")
            polygons.append([float(v) for v in poly])
        rle = mask_api.merge(mask_api.frPyObjects(polygons, height, width))
    elif isinstance(seg, dict):
        declared, counts = seg.get("size"), seg.get("counts")
        if not isinstance(declared, list) or [int(v) for v in declared if isinstance(v, int)] != [height, width]:
            raise DataError(f"{where} has an RLE of size {declared!r}, but its image is {height}×{width} (H×W): "
                            "expected 'size': [height, width] of the image.")
        runs = _rle_runs(counts, where)
        if sum(runs) != height * width:
            raise DataError(f"{where} has RLE counts summing to {sum(runs)} pixels: expected height × width = "
                            f"{height * width}.")
        rle = mask_api.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    else:
        raise DataError(f"{where} has segmentation {str(seg)[:80]!r}: expected polygons [[x0, y0, ...], ...] or "
                        "an RLE {'size': [h, w], 'counts': ...}.")
    return rle


def _rle_runs(counts: Any, where: str) -> list[int]:
    """Run lengths of an RLE, checked (pycocotools decodes without bounds checks, so bad counts must stop here)."""
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            raise DataError(f"{where} has RLE counts that are not non-negative integers.")
        return counts
    if not isinstance(counts, str | bytes):
        raise DataError(f"{where} has RLE counts {str(counts)[:40]!r}: expected a list of run lengths or COCO's "
                        "compressed string.")
    text = counts.decode("ascii", "replace") if isinstance(counts, bytes) else counts
    runs: list[int] = []
    p = 0
    while p < len(text):  # COCO's LEB128-like code (maskApi.c rleFrString): 5 bits per char, offset 48
        x, k, more = 0, 0, True
        while more:
            if p >= len(text):
                raise DataError(f"{where} has a truncated compressed RLE string.")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise DataError(f"{where} has a character {text[p]!r} that is not in COCO's compressed RLE.")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise DataError(f"{where} has a compressed RLE string that decodes to a negative run length.")
        runs.append(x)
    return runs
