"""class_prompt_lora learns two classes from stored prompts and predicts without any user prompt."""

from __future__ import annotations

import torch

import adaptsam
from adaptsam.data import LowResDataset, open_dataset
from adaptsam.engine.evaluate import evaluate
from adaptsam.engine.train import TrainConfig, fit


def test_two_class_few_shot_without_prompts_reaches_dice_08():
    """Red discs vs blue squares (synthetic, clutter off), LiteMedSAM with rank-8 LoRA at R=32; a fixed budget
    of 250 steps (about 1–2 minutes on 2 CPU cores; the time is reported, not asserted)."""
    resolution = 32
    train = LowResDataset(open_dataset("synthetic_2class", "train", size=resolution, n=256, clutter=False,
                                       max_shapes=2), resolution, train=True)
    test = LowResDataset(open_dataset("synthetic_2class", "test", size=resolution, n=16, clutter=False,
                                      max_shapes=2), resolution)
    model = adaptsam.create_model("lite_medsam", policy="native", resolution=resolution, adapter="class_prompt_lora",
                                  adapter_cfg={"rank": 8, "trainable_prompts": True})
    fit(model, train, TrainConfig(steps=250, batch_size=4, lr=5e-4, progress=False))
    assert model.adapter.config.classes == (1, 2)  # filled from the training data
    result = evaluate(model, test, progress=False)
    assert result.mean_dice > 0.8, result.per_class
    with torch.no_grad():  # no prompts at all: one mask per class, and a label map
        out = model(test[0]["image"][None])
    assert out.logits.shape == (1, 2, resolution, resolution)
    labels = model.class_prompts.labels(out.logits)
    assert set(labels.unique().tolist()) <= {0, 1, 2}
