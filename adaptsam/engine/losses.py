"""SAM's training loss: focal (×20) + dice (×1) + MSE between predicted and true IoU (×1); BCE as an option.

Every term takes per-mask logits N×H×W, binary targets N×H×W and a validity map N×H×W (pixels labelled
255 = ignore, padding and augmentation borders are not scored), and returns the mean over masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adaptsam.train_config import LossConfig


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    weights = valid.float()
    return (values * weights).flatten(1).sum(1) / weights.flatten(1).sum(1).clamp_min(1.0)


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, alpha: float = 0.25,
               gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al.), averaged over valid pixels, then over masks."""
    probs = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return _masked_mean(loss, valid).mean()


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return _masked_mean(F.binary_cross_entropy_with_logits(logits, targets, reduction="none"), valid).mean()


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 − soft Dice on probabilities over valid pixels, averaged over masks."""
    probs = logits.sigmoid() * valid
    targets = targets * valid
    intersection = (probs * targets).flatten(1).sum(1)
    total = probs.flatten(1).sum(1) + targets.flatten(1).sum(1)
    return (1 - (2 * intersection + smooth) / (total + smooth)).mean()


def mask_iou(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """IoU of the thresholded prediction with the target, per mask (no gradient: it's a regression target)."""
    with torch.no_grad():
        pred = (logits > 0) & valid
        target = (targets > 0.5) & valid
        intersection = (pred & target).flatten(1).sum(1).float()
        union = (pred | target).flatten(1).sum(1).float()
        return torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))


def iou_head_loss(iou_pred: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
                  valid: torch.Tensor) -> torch.Tensor:
    """MSE between the decoder's predicted IoU and the IoU its mask actually has."""
    return F.mse_loss(iou_pred.float(), mask_iou(logits, targets, valid))


def segmentation_loss(logits: torch.Tensor, iou_pred: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
                      config: LossConfig = LossConfig()) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted sum and each term's value (for logging)."""
    logits = logits.float()
    parts: dict[str, torch.Tensor] = {}
    if config.focal:
        parts["focal"] = focal_loss(logits, targets, valid)
    if config.dice:
        parts["dice"] = dice_loss(logits, targets, valid)
    if config.bce:
        parts["bce"] = bce_loss(logits, targets, valid)
    if config.iou:
        parts["iou"] = iou_head_loss(iou_pred, logits, targets, valid)
    weights = {"focal": config.focal, "dice": config.dice, "bce": config.bce, "iou": config.iou}
    total = sum(weights[name] * value for name, value in parts.items())
    return total, {name: float(value.detach()) for name, value in parts.items()}
