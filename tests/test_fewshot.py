"""Few-shot segmentation without prompts: the training-free baselines beat chance, and the bench stores
per-class IoU that an independent numpy computation reproduces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import adaptsam
from adaptsam.data import LowResDataset, k_shot_indices, open_dataset
from adaptsam.engine.evaluate import evaluate
from adaptsam.engine.train import TrainConfig, fit

R = 64


def _pooled_iou(labels: np.ndarray, masks: np.ndarray, cls: int) -> float:
    valid = masks != 255
    pred, true = (labels == cls) & valid, (masks == cls) & valid
    return float((pred & true).sum() / (pred | true).sum())


@pytest.fixture(scope="module")
def shapes():
    """Red discs vs blue squares (no clutter) at R=64: 2 shots per class, 8 test images, and the pooled IoU
    per class of uniformly random labels (chance)."""
    base = open_dataset("synthetic_2class", "train", n=16, size=R, clutter=False)
    train = LowResDataset(base, R, train=True, indices=k_shot_indices(base, 2))
    test = LowResDataset(open_dataset("synthetic_2class", "test", n=8, size=R, clutter=False), R)
    masks = np.stack([test.degraded(i).mask for i in range(len(test))]).astype(np.int64)
    guess = np.random.default_rng(0).integers(0, 3, masks.shape)
    chance = {name: _pooled_iou(guess, masks, cls) for cls, name in ((1, "disc"), (2, "square"))}
    return train, test, chance


@pytest.mark.parametrize("adapter", ["persam", "prototype"])
def test_training_free_baselines_beat_chance(adapter, shapes):
    train, test, chance = shapes
    model = adaptsam.create_model("lite_medsam", policy="native", resolution=R, adapter=adapter)
    assert model.adapter.trains_nothing and not model.uses_prompts
    fit(model, train, TrainConfig(steps=0, progress=False))
    assert model.adapter.config.classes == (1, 2)
    assert adaptsam.count_parameters(model).trainable == 0
    result = evaluate(model, test, progress=False)
    ious = {name: scores["pooled_iou"] for name, scores in result.per_class.items()}
    assert set(ious) == {"disc", "square"}
    assert all(ious[name] > chance[name] for name in ious), (ious, chance)
    assert np.mean(list(ious.values())) > 2 * np.mean(list(chance.values())), (ious, chance)


def test_prototype_logits_are_positive_exactly_where_the_class_is_nearest():
    from adaptsam.adapters.prototype import margin_logits

    scores = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.8, 0.3], [0.1, 0.2, 0.7]]).T.reshape(1, 3, 3, 1)  # 2 classes + bg
    logits = margin_logits(scores, 2)
    assert logits.shape == (1, 2, 3, 1)
    assert (logits[0, :, :, 0] > 0).tolist() == [[True, False, False], [False, True, False]]


def test_stored_per_class_iou_matches_numpy(tmp_path):
    """One bench cell (prototype, tiny random backbone): the store's per-class pooled IoU equals numpy's on
    label maps recomputed from the cell's saved adapter file."""
    from adaptsam.bench.runner import STORE_NAME, run_bench
    from adaptsam.bench.spec import AdapterChoice, BenchSpec
    from adaptsam.bench.store import ResultStore

    spec = BenchSpec(name="one", backbones=("lite_medsam_test",), adapters=(AdapterChoice("prototype"),),
                     policies=("native",), resolutions=(32,), datasets=("synthetic_2class",), shots=(2,), seeds=(0,),
                     steps=0, eval_limit=4, throughput_batch=1, prompt="none", pretrained=False)
    run_bench(spec, tmp_path, progress=False, report=False, timing=False)
    with ResultStore(tmp_path / STORE_NAME) as store:
        (row,) = store.rows()
    assert row.status == "done", row.error
    model = adaptsam.load_adapter(row.metrics["adapter_file"]).eval()
    test = LowResDataset(open_dataset("synthetic_2class", "test"), 32, indices=range(4))
    images = torch.from_numpy(np.stack([test.degraded(i).image for i in range(4)])).permute(0, 3, 1, 2)
    masks = np.stack([test.degraded(i).mask for i in range(4)]).astype(np.int64)
    with torch.no_grad():
        labels = model.head.labels(model(images.float() / 255).logits).numpy()
    stored = row.metrics["per_class"]
    for cls, name in ((1, "disc"), (2, "square")):
        if name in stored:
            assert stored[name]["pooled_iou"] == pytest.approx(_pooled_iou(labels, masks, cls), abs=1e-9)
            assert stored[name]["true_pixels"] == int((masks == cls).sum())
    assert stored, "the cell scored no class"


def test_class_table_marks_absent_classes_and_averages_seeds():
    from types import SimpleNamespace

    from adaptsam.bench.classes_report import class_tables

    def row(adapter, seed, sky, road, fence_true=0):
        per_class = {"Sky": {"pooled_iou": sky, "true_pixels": 10}, "Road": {"pooled_iou": road, "true_pixels": 5},
                     "Fence": {"pooled_iou": 0.0, "true_pixels": fence_true}}
        return SimpleNamespace(label=f"lite_medsam/{adapter}/native/R128/camvid/16-shot/seed{seed}", status="done",
                               metrics={"per_class": per_class}, cell=SimpleNamespace(dataset="camvid"))

    table = class_tables([row("persam", 0, 0.5, 0.3), row("cpl", 0, 0.8, 0.6), row("cpl", 1, 0.6, 0.4),
                          SimpleNamespace(label="x/seed0", status="done", metrics={"per_class": {"disc": {}}},
                                          cell=SimpleNamespace(dataset="synthetic"))])
    lines = table.splitlines()
    assert lines[0] == "## camvid: per-class IoU" and "synthetic" not in table  # one class: no table
    header = next(line for line in lines if line.startswith("| class"))
    assert header.index("cpl") < header.index("persam")  # best mIoU first
    assert "| Fence | absent | absent |" in lines
    assert "| Sky | 0.700 | 0.500 |" in lines  # seeds averaged
    assert "| **mIoU** | **0.600** | **0.400** |" in lines  # absent Fence not averaged
