"""Loss terms: known values, ignored pixels never count, the IoU head's target."""

from __future__ import annotations

import pytest
import torch

from adaptsam.engine.losses import LossConfig, dice_loss, focal_loss, mask_iou, segmentation_loss


def _pair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    targets = torch.zeros(1, 4, 4)
    targets[:, :2] = 1
    return torch.where(targets > 0, 10.0, -10.0), targets, torch.ones(1, 4, 4, dtype=torch.bool)


def test_perfect_prediction_has_near_zero_loss():
    logits, targets, valid = _pair()
    assert focal_loss(logits, targets, valid) < 1e-6
    assert dice_loss(logits, targets, valid) < 1e-3
    assert mask_iou(logits, targets, valid).item() == 1.0


def test_ignored_pixels_do_not_count():
    logits, targets, valid = _pair()
    wrong = logits.clone()
    wrong[:, 3, 3] = 10.0  # a false positive ...
    valid[:, 3, 3] = False  # ... on an ignored pixel
    assert focal_loss(wrong, targets, valid) < 1e-6
    assert mask_iou(wrong, targets, valid).item() == 1.0


def test_focal_matches_its_definition():
    logits = torch.tensor([[[2.0, -1.0]]])
    targets = torch.tensor([[[1.0, 1.0]]])
    valid = torch.ones_like(targets, dtype=torch.bool)
    p = logits.sigmoid()
    expected = (0.25 * -(p.log()) * (1 - p) ** 2).mean()
    assert torch.allclose(focal_loss(logits, targets, valid), expected)


def test_weights_and_parts():
    logits, targets, valid = _pair()
    total, parts = segmentation_loss(logits * 0, torch.zeros(1), targets, valid, LossConfig(focal=20, dice=1, iou=1))
    assert set(parts) == {"focal", "dice", "iou"}
    assert total.item() == pytest.approx(20 * parts["focal"] + parts["dice"] + parts["iou"], rel=1e-5)
    with pytest.raises(ValueError):
        LossConfig(focal=0, dice=0, bce=0)
