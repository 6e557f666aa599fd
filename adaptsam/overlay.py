"""Overlays and files of a prediction: translucent masks with contours and the prompts drawn, mask PNGs.

Kept apart from :mod:`adaptsam.predict` (which runs the model) because it only draws and writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from adaptsam.predict import ImagePrompts, Prediction

PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))


def render_overlay(image: np.ndarray, prediction: Prediction, prompts: ImagePrompts | None = None,
                   alpha: float = 0.45) -> np.ndarray:
    """The image with each kept mask (or class) filled translucently in its colour, its contour in full
    colour, and the prompts drawn (boxes as rectangles, points as dots; background points hollow)."""
    from PIL import Image, ImageDraw
    from scipy.ndimage import binary_erosion

    out = image.astype(np.float32)
    thick = max(1, round(max(image.shape[:2]) / 300))
    colours = [_colour(i, c) for i, c in enumerate(prediction.classes)]
    for mask, kept, colour in zip(prediction.masks, prediction.kept, colours):
        if not kept or not mask.any():
            continue
        out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(colour, np.float32)
        out[mask & ~binary_erosion(mask, iterations=thick)] = colour
    canvas = Image.fromarray(out.round().clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    if prompts is not None:
        for k in range(prompts.objects):
            colour = colours[k] if k < len(colours) else PALETTE[k % len(PALETTE)]
            if prompts.boxes is not None:
                draw.rectangle([float(v) for v in prompts.boxes[k]], outline=colour, width=thick)
            if prompts.points is not None:
                for x, y, label in prompts.points[k]:
                    if label >= 0:
                        r = 3 * thick
                        draw.ellipse([x - r, y - r, x + r, y + r], outline=(255, 255, 255), width=thick,
                                     fill=colour if label == 1 else None)
    return np.asarray(canvas)


def _colour(index: int, cls: int | None) -> tuple[int, int, int]:
    return PALETTE[(index if cls is None else cls) % len(PALETTE)]


def save_prediction(out_dir: Path, name: str, image: np.ndarray, prediction: Prediction,
                    prompts: ImagePrompts | None, alpha: float) -> dict[str, Any]:
    """Write mask PNG(s) and the overlay PNG; return the image's summary entry (paths relative to out_dir)."""
    from PIL import Image

    entries = []
    if prediction.labels is not None:
        mask_file = f"masks/{name}.png"
        Image.fromarray(prediction.labels.astype(np.uint8)).save(out_dir / mask_file)
    for k, (mask, score, kept, cls) in enumerate(zip(prediction.masks, prediction.scores, prediction.kept,
                                                     prediction.classes)):
        file = None
        if prediction.labels is None and kept:
            file = f"masks/{name}_{k}.png"
            Image.fromarray(mask.astype(np.uint8) * 255).save(out_dir / file)
        entry = {"index": k, "class": cls, "area": int(mask.sum()), "score": round(float(score), 4),
                 "kept": bool(kept), "file": file}
        if prompts is not None and prompts.boxes is not None and k < len(prompts.boxes):
            entry["box"] = [float(v) for v in prompts.boxes[k]]
        entries.append(entry)
    overlay = f"overlays/{name}.png"
    Image.fromarray(render_overlay(image, prediction, prompts, alpha)).save(out_dir / overlay)
    summary = {"size": [int(image.shape[1]), int(image.shape[0])], "overlay": overlay, "masks": entries}
    if prediction.labels is not None:
        summary.update(label_map=mask_file, background=prediction.background)
    return summary
