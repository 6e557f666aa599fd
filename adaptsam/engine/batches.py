"""From a LowResDataset batch to per-mask logits and targets, for training and evaluation alike.

A batch holds up to K prompt slots per image (one per foreground class present; empty slots have class
-1). Only filled slots are decoded: each becomes one (image embedding, prompt) pair, so multi-class data
costs one decoder pass per class present, not per slot. Prompt-free models (``model.head``: class prompts,
PerSAM, prototypes) decode every class of the head for every image instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from adaptsam.data.types import IGNORE_INDEX
from adaptsam.model import Prompts, SamModel
from adaptsam.train_config import PROMPT_MODES, check_prompt_mode

__all__ = ["PROMPT_MODES", "MaskBatch", "check_prompt_mode", "prompts_for_slots", "run_batch"]

@dataclass
class MaskBatch:
    """N masks: logits N×R×R, predicted IoU N, binary targets N×R×R, valid pixels N×R×R, and for each
    mask the position of its image in the batch and its class."""

    logits: torch.Tensor
    iou: torch.Tensor
    targets: torch.Tensor
    valid: torch.Tensor
    image: torch.Tensor
    classes: torch.Tensor


def prompts_for_slots(batch: dict[str, Any], slots: torch.Tensor, mode: str, device: torch.device) -> Prompts:
    """One prompt (K=1) per filled slot, in input pixels at R."""
    boxes = batch["boxes"].to(device)[slots][:, None] if "box" in mode else None
    coords = labels = None
    if "point" in mode:
        coords = batch["points"].to(device)[slots][:, None]
        labels = batch["point_labels"].to(device)[slots][:, None]
    return Prompts(boxes=boxes, point_coords=coords, point_labels=labels)


def run_batch(model: SamModel, batch: dict[str, Any], *, prompt: str = "box",
              embeddings: torch.Tensor | None = None) -> MaskBatch:
    """Encode (unless ``embeddings`` are given, e.g. from the cache, computed with the batch's ``valid_hw``),
    decode, and pair masks with targets."""
    device = model.device
    masks = batch["mask"].to(device)
    valid_hw = batch.get("valid_hw")  # content size, for policies that frame it (upsample, framing=stretch)
    if embeddings is None:
        embeddings = model.encode(batch["image"].to(device), valid_hw)
    head = model.head
    if head is None:
        classes = batch["classes"].to(device)
        slots = classes >= 0
        image = torch.arange(classes.shape[0], device=device)[:, None].expand_as(classes)[slots]
        mask_classes = classes[slots]
        out = model.decode(embeddings[image], prompts_for_slots(batch, slots, prompt, device),
                           valid_hw=None if valid_hw is None else valid_hw.to(device)[image])
        logits, iou = out.logits[:, 0], out.iou[:, 0]
    else:
        out = head(model, embeddings)
        batch_size, num_classes = out.logits.shape[:2]
        class_ids = head.class_ids.to(device)
        image = torch.arange(batch_size, device=device).repeat_interleave(num_classes)
        mask_classes = class_ids.repeat(batch_size)
        logits, iou = out.logits.flatten(0, 1), out.iou.flatten()
    image_masks = masks[image]
    targets = (image_masks == mask_classes[:, None, None]).float()
    valid = image_masks != IGNORE_INDEX
    return MaskBatch(logits, iou, targets, valid, image, mask_classes)
