"""``adaptsam train`` / ``adaptsam eval`` from flags and YAML; the files they write."""

from __future__ import annotations

import json

import pytest

from adaptsam.cli import main
from adaptsam.cli._options import parse_mapping

TINY = ["--backbone", "lite_medsam_test", "--random-init", "--policy", "native", "-R", "64", "--data", "synthetic",
        "--limit", "4", "--no-progress"]


def test_train_then_eval_the_saved_adapter(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--adapter", "lora", "--adapter-cfg", "rank=2,targets=[qv]", "--steps", "2",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("mean_dice", "mean_iou", "split", "n_images", "per_class", "per_image"):
        assert key in metrics
    assert metrics["experiment"]["adapter_cfg"] == {"rank": 2, "targets": ["qv"]}
    assert metrics["training"]["steps"] == 2 and not metrics["backbone_pretrained"]
    capsys.readouterr()
    assert main(["eval", "--weights", str(out / "adapter.safetensors"), "--data", "synthetic", "--limit", "4",
                 "--out", str(tmp_path / "eval")]) == 0
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again["mean_dice"] == metrics["mean_dice"]


def test_yaml_config_with_flags_overriding(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("backbone: lite_medsam_test\npretrained: false\npolicy: native\nresolution: 64\n"
                      "data: synthetic\neval_limit: 2\nadapter: decoder\ntrain:\n  steps: 50\n  batch_size: 2\n"
                      "  progress: false\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--steps", "1", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["steps"] == 1  # the flag won
    assert metrics["experiment"]["train"]["batch_size"] == 2  # the file's value kept


def test_zero_shot_eval_without_weights(tmp_path):
    assert main(["eval", *TINY, "--adapter", "frozen", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["n_images"] == 4


def test_bad_options_are_explained(tmp_path, capsys):
    assert main(["train", *TINY, "--adapter", "lorra", "--out", str(tmp_path)]) == 2
    assert "Did you mean 'lora'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="Unknown train keys"):
        from adaptsam.engine.experiment import Experiment

        Experiment.from_dict({"train": {"stepz": 3}})
    assert parse_mapping('{"rank": 4}') == {"rank": 4}
    assert parse_mapping("rank=4,targets=[qv, mlp]") == {"rank": 4, "targets": ["qv", "mlp"]}


def test_import_labelme_command(tmp_path):
    import json as _json

    from PIL import Image

    src = tmp_path / "labelme"
    src.mkdir()
    Image.new("RGB", (20, 16), "white").save(src / "a.png")
    (src / "a.json").write_text(_json.dumps({"imagePath": "a.png", "imageHeight": 16, "imageWidth": 20, "shapes": [
        {"label": "cat", "points": [[2, 2], [10, 2], [10, 10], [2, 10]], "shape_type": "polygon"}]}))
    assert main(["import", "labelme", str(src), str(tmp_path / "out"), "--labels", "cat,dog"]) == 0
    assert (tmp_path / "out" / "labels.txt").read_text().split() == ["0", "background", "1", "cat", "2", "dog"]
    assert (tmp_path / "out" / "masks" / "a.png").exists()
