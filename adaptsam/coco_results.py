"""``adaptsam predict --format coco``: predictions as a COCO results file, beside the PNG masks.

Written from what ``predict`` already wrote (``summary.json`` and the mask PNGs), so the COCO file holds
exactly the PNG masks, RLE-encoded by ``pycocotools`` (``pip install adaptsam[coco]``):

- ``coco_images.json``: a COCO dataset with ``images`` (id = position in summary.json + 1, file_name, width,
  height), ``categories`` and no annotations: load it with ``COCO()`` and call ``loadRes`` on
- ``coco_results.json``: one ``{"image_id", "category_id", "segmentation": RLE, "score"}`` per kept mask.
  Promptable models: category 1 ("object"). Prompt-free (class) models: one result per class in the label
  map, category = class index, score = that class's mask score when predict recorded one, else 1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from adaptsam.errors import DataError

IMAGES_FILE = "coco_images.json"
RESULTS_FILE = "coco_results.json"


def _rle(mask: np.ndarray, mask_api: Any) -> dict[str, Any]:
    rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def write_coco_results(out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``coco_images.json`` and ``coco_results.json`` in ``out_dir`` from its summary.json and masks."""
    try:
        from pycocotools import mask as mask_api
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("--format coco needs pycocotools: pip install 'adaptsam[coco]'.") from exc
    out = Path(out_dir)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    images, results = [], []
    for image_id, item in enumerate(summary["images"], start=1):
        width, height = item["size"]
        images.append({"id": image_id, "file_name": Path(item["image"]).name, "width": width, "height": height})
        if item.get("label_map"):
            labels = np.asarray(Image.open(out / item["label_map"]))
            scores = {m.get("class"): m.get("score") for m in item["masks"]}
            for value in (int(v) for v in np.unique(labels) if 0 < v < 255):
                score = scores.get(value, 1.0)
                results.append({"image_id": image_id, "category_id": value, "score": float(score or 1.0),
                                "segmentation": _rle(labels == value, mask_api)})
            continue
        for entry in item["masks"]:
            if not entry.get("kept") or not entry.get("file"):
                continue
            mask = np.asarray(Image.open(out / entry["file"])) > 127
            results.append({"image_id": image_id, "category_id": 1, "score": float(entry["score"]),
                            "segmentation": _rle(mask, mask_api)})
    label_mode = any(item.get("label_map") for item in summary["images"])
    ids = sorted({r["category_id"] for r in results} or {1})
    categories = [{"id": c, "name": f"class {c}" if label_mode else "object"} for c in ids]
    dataset = {"info": {"description": "adaptsam predict", "model": summary.get("model", {})}, "images": images,
               "annotations": [], "categories": categories}
    images_path, results_path = out / IMAGES_FILE, out / RESULTS_FILE
    images_path.write_text(json.dumps(dataset, indent=1) + "\n", encoding="utf-8")
    results_path.write_text(json.dumps(results) + "\n", encoding="utf-8")
    return images_path, results_path
