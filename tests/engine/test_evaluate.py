"""Metrics: our per-mask Dice/IoU agree with torchmetrics; evaluate() on binary and 2-class data."""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.classification import binary_f1_score, binary_jaccard_index

import adaptsam
from adaptsam.data import LowResDataset, open_dataset
from adaptsam.engine.evaluate import dice_iou, evaluate


def test_dice_iou_agree_with_torchmetrics_and_ignore_pixels():
    generator = torch.Generator().manual_seed(0)
    pred = torch.rand(5, 16, 16, generator=generator) > 0.5
    target = torch.rand(5, 16, 16, generator=generator) > 0.6
    valid = torch.rand(5, 16, 16, generator=generator) > 0.2
    dice, iou = dice_iou(pred, target, valid)
    for i in range(5):
        labels = torch.where(valid[i], target[i].long(), torch.full_like(target[i], 255, dtype=torch.long))
        assert math.isclose(dice[i].item(), binary_f1_score(pred[i].long(), labels, ignore_index=255).item(),
                            rel_tol=1e-5)
        assert math.isclose(iou[i].item(), binary_jaccard_index(pred[i].long(), labels, ignore_index=255).item(),
                            rel_tol=1e-5)


def test_both_empty_scores_one():
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    dice, iou = dice_iou(empty, empty, torch.ones_like(empty))
    assert dice.item() == iou.item() == 1.0


def test_evaluate_binary_and_two_class():
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64)
    binary = evaluate(model, LowResDataset(open_dataset("synthetic", "test", n=6), 64), progress=False)
    assert binary.n_images == 6 and 0 <= binary.mean_dice <= 1 and set(binary.per_class) == {"foreground"}
    assert len(binary.per_image) == 6 and binary.split == "test" and binary.resolution == 64
    two = evaluate(model, LowResDataset(open_dataset("synthetic_2class", "test", n=6), 64), progress=False)
    assert set(two.per_class) <= {"disc", "square"} and two.per_class
    assert sum(c["n"] for c in two.per_class.values()) >= two.n_images


def test_evaluate_does_not_augment_and_restores_mode():
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64).train()
    data = LowResDataset(open_dataset("synthetic", "test", n=4), 64, train=True)
    first = evaluate(model, data, progress=False)
    second = evaluate(model, data, progress=False)
    assert first.mean_dice == second.mean_dice
    assert model.training
