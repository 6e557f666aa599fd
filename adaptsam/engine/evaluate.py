"""Evaluation at the resolution R the user has: per-image mean Dice (the headline), IoU, per-class scores.

Prompted models are scored once per (image, class present) with that class's prompt; prompt-free models
(``model.head``: class prompts, PerSAM, prototypes) predict a label map by argmax and are scored per (image,
class present in the truth or in the prediction). Pixels labelled 255 (ignore, padding) are never scored.
Dataset-level (pixel-pooled) Dice and IoU come from torchmetrics' binary F1 / Jaccard with
``ignore_index=255``; per-image and per-class means are computed here from the same counts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from adaptsam.data.types import IGNORE_INDEX
from adaptsam.engine.batches import run_batch
from adaptsam.errors import DataError
from adaptsam.model import SamModel
from adaptsam.train_config import check_prompt_mode


@dataclass
class EvalResult:
    mean_dice: float
    mean_iou: float
    dice: float  # pooled over all scored pixels (torchmetrics)
    iou: float
    n_images: int
    n_skipped: int  # images with nothing to score (no class present)
    dataset: str = ""
    split: str = ""
    resolution: int = 0
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    per_image: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, *, with_images: bool = True) -> dict[str, Any]:
        out = asdict(self)
        if not with_images:
            out.pop("per_image")
        return out


def _counts(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
    pred, target = pred & valid, target & valid
    inter = (pred & target).flatten(1).sum(1)
    p, t = pred.flatten(1).sum(1), target.flatten(1).sum(1)
    return inter, p, t


def dice_iou(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mask Dice and IoU of boolean N×H×W masks over valid pixels (both empty → 1)."""
    inter, p, t = _counts(pred, target, valid)
    union = p + t - inter
    dice = torch.where(p + t > 0, 2 * inter / (p + t).clamp_min(1), torch.ones_like(inter, dtype=torch.float))
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter, dtype=torch.float))
    return dice.float(), iou.float()


def _pooled(counts: np.ndarray) -> dict[str, float]:
    """Dataset-level Dice and IoU of one class (its pixels pooled over the scored images): the mIoU convention
    of semantic segmentation, beside the per-image means; ``true_pixels`` 0 = the class is absent from the truth."""
    inter, pred, true = (int(x) for x in counts)
    union = pred + true - inter
    return {"pooled_dice": 2 * inter / (pred + true) if pred + true else 1.0,
            "pooled_iou": inter / union if union else 1.0, "true_pixels": true}


class _Scores:
    """Accumulates (image, class) scores and the pooled torchmetrics state."""

    def __init__(self, class_names: tuple[str, ...]):
        from torchmetrics.classification import BinaryF1Score, BinaryJaccardIndex

        self.names = class_names
        # evaluation runs on the main process only: never wait for other ranks to sync metric state
        self.f1 = BinaryF1Score(ignore_index=IGNORE_INDEX, sync_on_compute=False)
        self.jaccard = BinaryJaccardIndex(ignore_index=IGNORE_INDEX, sync_on_compute=False)
        self.rows: list[tuple[str, int, float, float]] = []  # (image id, class, dice, iou)
        self.pooled: dict[int, np.ndarray] = {}  # class -> pixels (intersection, predicted, true) over the set

    def add(self, ids: list[str], image: torch.Tensor, classes: torch.Tensor, pred: torch.Tensor,
            target: torch.Tensor, valid: torch.Tensor) -> None:
        dice, iou = dice_iou(pred, target, valid)
        for c, *counts in zip(classes.tolist(), *(x.tolist() for x in _counts(pred, target, valid))):
            self.pooled[int(c)] = self.pooled.get(int(c), np.zeros(3, np.int64)) + counts
        labels = torch.where(valid, target.long(), torch.full_like(target, IGNORE_INDEX, dtype=torch.long))
        self.f1.update(pred.long().cpu(), labels.cpu())
        self.jaccard.update(pred.long().cpu(), labels.cpu())
        for i, c, d, j in zip(image.tolist(), classes.tolist(), dice.tolist(), iou.tolist()):
            self.rows.append((ids[i], int(c), d, j))

    def result(self, n_images: int, **meta: Any) -> EvalResult:
        per_image: dict[str, list[tuple[float, float]]] = {}
        per_class: dict[int, list[tuple[float, float]]] = {}
        for image_id, cls, d, j in self.rows:
            per_image.setdefault(image_id, []).append((d, j))
            per_class.setdefault(cls, []).append((d, j))
        images = [{"id": k, "dice": float(np.mean([d for d, _ in v])), "iou": float(np.mean([j for _, j in v]))}
                  for k, v in per_image.items()]
        classes = {self._name(c): {"dice": float(np.mean([d for d, _ in v])), "iou": float(np.mean([j for _, j in v])),
                                   "n": len(v), **_pooled(self.pooled[c])} for c, v in sorted(per_class.items())}
        scored = bool(self.rows)
        return EvalResult(
            mean_dice=float(np.mean([r["dice"] for r in images])) if images else float("nan"),
            mean_iou=float(np.mean([r["iou"] for r in images])) if images else float("nan"),
            dice=float(self.f1.compute()) if scored else float("nan"),
            iou=float(self.jaccard.compute()) if scored else float("nan"),
            n_images=len(images), n_skipped=n_images - len(images), per_class=classes, per_image=images, **meta)

    def _name(self, cls: int) -> str:
        return self.names[cls] if 0 <= cls < len(self.names) else str(cls)


@torch.inference_mode()
def evaluate(model: SamModel, data: Any, *, batch_size: int = 8, prompt: str = "box",
             progress: bool = True, cache: Any = None, precision: str | None = None) -> EvalResult:
    """Score ``model`` on ``data`` (a LowResDataset, no augmentation) at its resolution.

    ``cache`` (an :class:`~adaptsam.engine.cache.EmbeddingCache`) serves image embeddings when the encoder is
    frozen, so cells that share backbone, weights, policy and R encode each test image once per bench.

    Images without any object are counted in ``n_skipped``; when no image is scored at all the result would
    be NaN, so that is a DataError naming the dataset instead of a silent NaN.
    ``precision`` (``auto``/None: bf16 autocast on CUDA, fp32 on CPU; or ``fp32``, ``bf16``) sets autocast.
    """
    from adaptsam.devices import autocast, resolve_precision

    check_prompt_mode(prompt)
    precision = resolve_precision(precision, model.device)
    if getattr(data, "augment", False):
        data = data.without_augmentation()
    was_training = model.training
    model.eval()
    scores = _Scores(tuple(data.classes))
    positions = list(range(len(data)))
    chunks = [positions[i:i + batch_size] for i in range(0, len(positions), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="eval", unit="batch", leave=False, dynamic_ncols=True)
    for chunk in chunks:
        batch = default_collate([data[p] for p in chunk])
        ids = list(batch["id"])
        with autocast(model.device, precision):
            if model.uses_prompts:
                if not bool((batch["classes"] >= 0).any()):
                    continue
                embeddings = cache.embeddings(batch["image"], ids) if cache is not None else None
                masks = run_batch(model, batch, prompt=prompt, embeddings=embeddings)
                scores.add(ids, masks.image, masks.classes, masks.logits > 0, masks.targets > 0.5, masks.valid)
            else:
                _score_label_maps(model, batch, ids, scores)
    model.train(was_training)
    if not scores.rows:
        raise DataError(
            f"Nothing to score in {data.base.name}/{data.base.split} at R={data.resolution}: none of its {len(data)} "
            f"image(s) holds an object (every mask is background or 255 = ignore), so Dice would be NaN. Check "
            f"the masks; with a labels.txt, foreground pixels must hold class indices (1, 2, ...), not 255.")
    return scores.result(len(data), dataset=data.base.name, split=data.base.split, resolution=data.resolution)


def _score_label_maps(model: SamModel, batch: dict[str, Any], ids: list[str], scores: _Scores) -> None:
    """Prompt-free models: argmax label map, one binary score per class present in truth or prediction."""
    device = model.device
    head = model.head
    out = head(model, model.encode(batch["image"].to(device)))
    labels = head.labels(out.logits)
    mask = batch["mask"].to(device)
    valid = mask != IGNORE_INDEX
    for cls in head.class_ids.tolist():
        pred, target = labels == cls, mask == cls
        keep = (target & valid).flatten(1).any(1) | (pred & valid).flatten(1).any(1)
        if keep.any():
            image = torch.nonzero(keep).flatten()
            scores.add(ids, image, torch.full_like(image, cls), pred[keep], target[keep], valid[keep])
