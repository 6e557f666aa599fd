"""``adaptsam predict --format coco``: the results load with pycocotools' loadRes and decode to the PNG masks."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import adaptsam
from adaptsam.cli import main

from .test_predict import images, tiny_adapter  # noqa: F401 - fixtures

coco = pytest.importorskip("pycocotools.coco")
# pycocotools 2.0.x under numpy 2 (annToMask): a harmless __array__(copy=) notice
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _load(out):
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt = coco.COCO(str(out / "coco_images.json"))
        return gt, gt.loadRes(str(out / "coco_results.json"))


def test_promptable_predictions_as_coco_results(tiny_adapter, images, tmp_path, capsys):  # noqa: F811
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"wide.png": {"boxes": [[10, 10, 80, 60], [60, 20, 140, 85]]},
                                   "tall.jpg": {"boxes": [[5, 5, 60, 100]]}}))
    out = tmp_path / "out"
    assert main(["predict", str(tiny_adapter), images["wide"], images["tall"], "--prompts", str(prompts),
                 "--out", str(out), "-q", "--threshold", "-0.5", "--format", "coco"]) == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    gt, results = _load(out)
    files = {(i + 1, m["index"]): m for i, item in enumerate(summary["images"]) for m in item["masks"] if m["file"]}
    anns = results.loadAnns(results.getAnnIds())
    assert len(anns) == len(files) == 3
    by_image: dict[int, int] = {}
    for ann in anns:  # results keep summary order within an image: the k-th result is mask k
        k = by_image.get(ann["image_id"], 0)
        by_image[ann["image_id"]] = k + 1
        entry = files[(ann["image_id"], k)]
        png = np.asarray(Image.open(out / entry["file"])) == 255
        np.testing.assert_array_equal(results.annToMask(ann).astype(bool), png)
        assert ann["score"] == pytest.approx(entry["score"]) and ann["category_id"] == 1
        assert gt.imgs[ann["image_id"]]["width"] == png.shape[1]
    assert sum(png.sum() for png in [np.asarray(Image.open(out / m["file"])) == 255 for m in files.values()]) > 0


def test_class_prompt_predictions_as_coco_results(images, tmp_path):  # noqa: F811
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="class_prompt_lora",
                                  adapter_cfg={"classes": (1, 2), "threshold": 0.3})
    with torch.no_grad():
        model.class_prompts.embeddings.normal_()
    path = tmp_path / "classes.safetensors"
    adaptsam.save_adapter(model, path)
    out = tmp_path / "out"
    assert main(["predict", str(path), images["tall"], "--out", str(out), "-q", "--format", "coco"]) == 0
    labels = np.asarray(Image.open(out / "masks" / "tall.png"))
    _, results = _load(out)
    anns = results.loadAnns(results.getAnnIds())
    assert anns, "the random class prompts should paint at least one class"
    assert sorted(a["category_id"] for a in anns) == sorted(int(v) for v in np.unique(labels) if v > 0)
    for ann in anns:
        np.testing.assert_array_equal(results.annToMask(ann).astype(bool), labels == ann["category_id"])
