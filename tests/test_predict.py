"""``adaptsam predict``: any input size, prompt mapping, outputs at the original size, per-image failures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import adaptsam
from adaptsam.cli import main
from adaptsam.errors import DataError, IncompatibleError
from adaptsam.predict import (
    ImagePrompts,
    PredictConfig,
    Predictor,
    find_images,
    load_model,
    prompts_for,
)


def write_image(path, height: int, width: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory):
    """A LoRA adapter file for the tiny LiteMedSAM-style test backbone at R=64, with non-zero updates."""
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="lora")
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("adapter") / "tiny_lora.safetensors"
    adaptsam.save_adapter(model, path)
    return path


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    return {"wide": write_image(folder / "wide.png", 90, 150, 1), "tall": write_image(folder / "tall.jpg", 120, 70, 2)}


def test_prompts_map_into_the_degraded_frame_with_pixel_centres_aligned():
    """A 200×100 image at R=50 (scale 1/4): a point's pixel centre i + 0.5 maps to (i + 0.5) / 4, i.e. index
    (i + 0.5) / 4 - 0.5; a box maps to the pixels it covers, [x0 / 4, (x1 + 1) / 4 - 1] (docs/conventions.md);
    coordinates beyond the content are clipped to it."""
    prompts = ImagePrompts(boxes=np.array([[20.0, 10.0, 100.0, 60.0], [0.0, 0.0, 199.0, 99.0]]),
                           points=np.array([[[100.0, 50.0, 1.0]], [[0.0, 0.0, 0.0]]]))
    mapped = prompts.to_resolution((0.25, 0.25), (25, 50))
    assert mapped.boxes.shape == (1, 2, 4)
    assert mapped.boxes[0, 0].tolist() == pytest.approx([5.0, 2.5, 24.25, 14.25])
    assert mapped.boxes[0, 1].tolist() == pytest.approx([0.0, 0.0, 49.0, 24.0])
    assert mapped.point_coords[0, 0, 0].tolist() == pytest.approx([24.625, 12.125])
    assert mapped.point_labels.tolist() == [[[1.0], [0.0]]]


def test_prompt_entries_are_parsed_and_bad_ones_named():
    table = {"a.jpg": {"boxes": [[1, 2, 10, 20], [5, 5, 9, 9]], "points": [[[3, 4, 1]], [[6, 6, 1], [7, 7, 0]]]}}
    parsed = prompts_for(table, "some/dir/a.jpg", "p.json")
    assert parsed.objects == 2
    assert parsed.points.shape == (2, 2, 3)
    assert parsed.points[0, 1, 2] == -1  # padding point of the shorter set
    with pytest.raises(DataError, match=r"No prompts for image other/b\.jpg in p\.json.*'b\.jpg'"):
        prompts_for(table, "other/b.jpg", "p.json")
    with pytest.raises(DataError, match=r"p\.json\['c'\].*x0 <= x1"):
        prompts_for({"c": {"boxes": [[10, 0, 5, 4]]}}, "c.png", "p.json")
    with pytest.raises(DataError, match="2 boxes need 2 point sets"):
        ImagePrompts.parse({"boxes": [[0, 0, 1, 1], [0, 0, 2, 2]], "points": [[1, 1, 1]]}, "x")
    with pytest.raises(DataError, match="label 1 = foreground"):
        ImagePrompts.parse({"points": [[1, 1, 7]]}, "x")


def test_find_images_expands_folders_and_globs_and_reports_what_matched_nothing(images, tmp_path):
    folder = tmp_path / "imgs"
    found, missing = find_images([str(folder), str(folder / "*.jpg"), str(tmp_path / "nope.png"),
                                  str(tmp_path / "*.tif")])
    assert [p.name for p in found] == ["tall.jpg", "wide.png"]
    assert [why for _, why in missing] == [f"{tmp_path / 'nope.png'}: no such file or folder",
                                           f"pattern {str(tmp_path / '*.tif')!r} matches no file"]


def test_predictor_returns_masks_at_the_original_size(tiny_adapter, images):
    model = load_model(tiny_adapter)
    assert (model.info.name, model.resolution) == ("lite_medsam_test", 64)
    image = np.asarray(Image.open(images["wide"]))
    prompts = ImagePrompts(boxes=np.array([[10.0, 10.0, 80.0, 60.0], [12.0, 10.0, 80.0, 62.0]]))
    predictor = Predictor(model, PredictConfig(progress=False))
    (prediction,) = predictor.predict([image], [prompts])
    assert prediction.masks.shape == (2, 90, 150) and prediction.masks.dtype == bool
    assert prediction.scores.shape == (2,) and prediction.kept.all()


def test_predict_cli_writes_masks_overlays_and_summary(tiny_adapter, images, tmp_path, capsys):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"wide.png": {"boxes": [[10, 10, 80, 60]]},
                                   "tall.jpg": {"boxes": [[5, 5, 60, 100]], "points": [[30, 50, 1]]}}))
    out = tmp_path / "out"
    code = main(["predict", str(tiny_adapter), images["wide"], images["tall"], "--prompts", str(prompts),
                 "--out", str(out), "-q", "--min-area", "5", "--max-hole", "5"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["backbone"] == "lite_medsam_test" and summary["model"]["adapter"] == "lora"
    assert summary["failed"] == []
    for entry, (height, width) in zip(summary["images"], [(90, 150), (120, 70)]):
        assert entry["size"] == [width, height]
        mask = np.asarray(Image.open(out / entry["masks"][0]["file"]))
        assert mask.shape == (height, width)
        assert set(np.unique(mask)) <= {0, 255}
        assert entry["masks"][0]["area"] == int((mask == 255).sum())
        assert np.isfinite(entry["masks"][0]["score"])  # random tiny model: any value
        overlay = np.asarray(Image.open(out / entry["overlay"]))
        assert overlay.shape == (height, width, 3)


def test_bad_inputs_are_named_the_rest_is_processed_and_the_exit_is_non_zero(tiny_adapter, images, tmp_path,
                                                                            capsys):
    broken = tmp_path / "imgs" / "broken.jpg"
    broken.write_bytes(b"this is not a jpeg")
    unlisted = write_image(tmp_path / "imgs" / "unlisted.png", 40, 40)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"wide.png": {"boxes": [[10, 10, 80, 60]]}, "tall.jpg": {"boxes": [[5, 5, 60, 100]]},
                                   "broken.jpg": {"boxes": [[0, 0, 5, 5]]}}))
    out = tmp_path / "out"
    code = main(["predict", str(tiny_adapter), str(tmp_path / "imgs"), str(tmp_path / "missing.png"),
                 "--prompts", str(prompts), "--out", str(out), "-q", "--batch-size", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"Cannot read image {broken}" in err
    assert f"No prompts for image {unlisted} in {prompts}" in err
    assert f"{tmp_path / 'missing.png'}: no such file or folder" in err
    assert "3 of 5 image(s) failed" in err
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(e["name"] for e in summary["images"]) == ["tall", "wide"]
    assert len(summary["failed"]) == 3
    assert (out / "masks" / "wide_0.png").is_file() and (out / "overlays" / "tall.png").is_file()


def test_an_adapter_made_for_another_backbone_is_refused_naming_the_file(tiny_adapter, images, tmp_path, capsys):
    with pytest.raises(IncompatibleError, match=r"tiny_lora\.safetensors was made for backbone 'lite_medsam_test'"):
        load_model(tiny_adapter, backbone="vit_test")
    code = main(["predict", str(tiny_adapter), images["wide"], "--backbone", "vit_test", "--prompts", "p.json",
                 "--out", str(tmp_path / "o"), "-q"])
    assert code == 2
    assert "tiny_lora.safetensors was made for backbone 'lite_medsam_test'" in capsys.readouterr().err


def test_a_promptable_model_without_a_prompts_file_is_refused_before_any_work(images, tmp_path, capsys):
    code = main(["predict", "--backbone", "lite_medsam_test", "--resolution", "64", images["wide"], "--out",
                 str(tmp_path / "o"), "-q"])
    assert code == 2
    assert "pass a prompts file (--prompts FILE)" in capsys.readouterr().err


def test_without_weights_or_backbone_the_command_says_what_it_expected(images, tmp_path, capsys):
    assert main(["predict", images["wide"], "--out", str(tmp_path / "o")]) == 2
    assert "must be an adapter .safetensors file, or pass --backbone" in capsys.readouterr().err


def test_class_prompt_models_write_class_index_maps_without_prompts(images, tmp_path):
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="class_prompt_lora",
                                  adapter_cfg={"classes": (1, 2), "threshold": 0.3})
    with torch.no_grad():
        model.class_prompts.embeddings.normal_()
    path = tmp_path / "classes.safetensors"
    adaptsam.save_adapter(model, path)
    out = tmp_path / "out"
    assert main(["predict", str(path), images["tall"], "--out", str(out), "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    (entry,) = summary["images"]
    labels = np.asarray(Image.open(out / entry["label_map"]))
    assert labels.shape == (120, 70)
    assert set(np.unique(labels)) <= {0, 1, 2}
    assert [m["class"] for m in entry["masks"]] == [1, 2]
    assert sum(m["area"] for m in entry["masks"]) == int((labels > 0).sum())
    with pytest.raises(IncompatibleError, match="prompt-free"):
        from adaptsam.predict import predict_paths

        predict_paths(Predictor(load_model(path), PredictConfig(progress=False)), [images["tall"]], out, "p.json")


def test_real_lite_medsam_on_kvasir_matches_the_ground_truth(data_root, tmp_path):
    """Zero-shot LiteMedSAM at R=128 with ground-truth boxes: masks at the original size, high Dice."""
    from adaptsam.data import box_from_mask, open_dataset
    from adaptsam.predict import describe_model, predict_paths

    test = open_dataset("kvasir_seg", "test", root=data_root / "kvasir_seg")
    samples = [test[0]]
    prompts = {s.meta["id"] + ".jpg": {"boxes": [box_from_mask(s.mask, 1).tolist()]} for s in samples}
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    model = load_model(backbone="lite_medsam", resolution=128)
    run = predict_paths(Predictor(model, PredictConfig(progress=False)), [s.meta["image_path"] for s in samples],
                        tmp_path / "out", tmp_path / "p.json", describe_model(model, None))
    assert run.failures == [] and run.processed == 1
    for sample in samples:
        mask = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{sample.meta['id']}_0.png")) > 0
        assert mask.shape == sample.mask.shape
        truth = sample.mask == 1
        assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) > 0.85


def test_an_image_that_breaks_a_batch_fails_alone(tiny_adapter, images, tmp_path):
    from adaptsam.predict import predict_paths

    class Picky(Predictor):
        def predict(self, batch, prompts):
            if any(image.shape[1] == 150 for image in batch):
                raise ValueError("the wide one")
            return super().predict(batch, prompts)

    table = tmp_path / "p.json"
    table.write_text(json.dumps({"wide.png": {"boxes": [[1, 1, 9, 9]]}, "tall.jpg": {"boxes": [[1, 1, 9, 9]]}}))
    run = predict_paths(Picky(load_model(tiny_adapter), PredictConfig(progress=False)), [images["wide"],
                        images["tall"]], tmp_path / "out", table)
    assert run.processed == 1
    assert run.failures == [(images["wide"], f"{images['wide']}: the wide one")]
