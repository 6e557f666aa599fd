"""Automatic splits: seeded, reproducible, stratified for multi-class data, said out loud, writable to splits/."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adaptsam.data.folder import ImageMaskFolder
from adaptsam.data.split import SplitConfig, auto_split, draw_split, folder_split
from adaptsam.errors import ConfigError, DataError

from .conftest import binary_item, write_dataset


def _no_splits(root, n=10, labels=None, masks=None):
    items = {f"im{i:02d}": binary_item(i, 16, 16) for i in range(n)}
    if masks is not None:
        items = {k: (img, masks[j]) for j, (k, (img, _)) in enumerate(items.items())}
    write_dataset(root, items, {}, labels)
    (root / "splits").rmdir()
    return root


def test_draw_split_sizes_and_seed():
    ids = [f"x{i}" for i in range(20)]
    a = draw_split(ids, SplitConfig(seed=3))
    assert {k: len(v) for k, v in a.splits.items()} == {"train": 16, "test": 4}
    assert sorted(a.splits["train"] + a.splits["test"]) == sorted(ids)
    assert draw_split(list(reversed(ids)), SplitConfig(seed=3)) == a  # input order does not matter
    assert draw_split(ids, SplitConfig(seed=4)).splits != a.splits
    b = draw_split(ids, SplitConfig(train=0.5, val=0.25, seed=0))
    assert {k: len(v) for k, v in b.splits.items()} == {"train": 10, "val": 5, "test": 5}
    assert "seed 3: train 16, test 4 of 20 images" in a.describe()
    assert len(draw_split(["only", "two"]).splits["test"]) == 1  # test keeps an image


def test_stratified_every_class_in_train():
    ids = [f"x{i}" for i in range(10)]
    classes = {i: {1} for i in ids}
    classes["x7"] = {1, 3}  # class 3 lives in one image only
    classes["x2"] = {2}
    for seed in range(20):
        split = draw_split(ids, SplitConfig(seed=seed), classes)
        assert "x7" in split.splits["train"] and "x2" in split.splits["train"]
        assert len(split.splits["train"]) == 8 and split.stratified
    # unstratified, some seed puts x7 in test: the stratification is doing the work
    assert any("x7" in draw_split(ids, SplitConfig(seed=s)).splits["test"] for s in range(20))


def test_bad_fractions_are_config_errors():
    with pytest.raises(ConfigError, match="--train"):
        SplitConfig(train=0)
    with pytest.raises(ConfigError, match="train \\+ val"):
        SplitConfig(train=0.8, val=0.3)


def test_folder_without_splits_is_split_and_said(tmp_path, capsys):
    root = _no_splits(tmp_path / "d")
    train = ImageMaskFolder(root, "train")
    err = capsys.readouterr().err
    assert "has no splits/" in err and "seed 0: train 8, test 2 of 10 images" in err and "adaptsam split" in err
    test = ImageMaskFolder(root, "test")
    assert capsys.readouterr().err == ""  # said once per folder
    assert sorted(train.ids + test.ids) == [f"im{i:02d}" for i in range(10)] and not set(train.ids) & set(test.ids)
    assert train[0].mask.max() == 1
    with pytest.raises(DataError, match="Available splits: test, train"):
        ImageMaskFolder(root, "val")
    # reproducible from its seed: the folder's split is draw_split with seed 0
    assert tuple(train.ids) == draw_split(train.ids + test.ids, SplitConfig(seed=0)).splits["train"]


def test_multiclass_folder_is_stratified(tmp_path):
    masks = []
    for i in range(10):
        m = np.zeros((16, 16), np.uint8)
        m[2:6, 2:6] = 1
        if i == 4:
            m[8:12, 8:12] = 2  # the only image of class 2
        masks.append(m)
    root = _no_splits(tmp_path / "mc", labels=["background", "a", "b"], masks=masks)
    for seed in range(8):
        assert "im04" in folder_split(root, SplitConfig(seed=seed)).splits["train"]


def test_split_command_writes_what_the_folder_drew(tmp_path, capsys):
    from adaptsam.cli import main

    root = _no_splits(tmp_path / "d")
    drawn = auto_split(root)
    assert main(["split", str(root)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert tuple(ImageMaskFolder(root, "train").ids) == drawn.splits["train"]
    assert main(["split", str(root), "--seed", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["split", str(root), "--seed", "1", "--train", "0.6", "--val", "0.2", "--overwrite"]) == 0
    assert len(ImageMaskFolder(root, "val")) == 2
    assert main(["split", str(root), "--train", "1.5"]) == 2


@pytest.mark.slow
def test_folder_without_splits_trains_evaluates_and_benches(tmp_path, capsys):
    """Acceptance: train, eval and bench all run on a folder without splits/ (tiny backbone, random init)."""
    from adaptsam.bench.runner import run_bench
    from adaptsam.bench.spec import AdapterChoice, BenchSpec
    from adaptsam.cli import main

    root = _no_splits(tmp_path / "nosplits", n=6)
    common = ["--backbone", "lite_medsam_test", "--random-init", "--policy", "native", "-R", "32", "--data",
              str(root), "--no-progress"]
    assert main(["train", *common, "--adapter", "lora", "--steps", "1", "--out", str(tmp_path / "t")]) == 0
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n_images"] == 1
    assert main(["eval", *common, "--adapter", "frozen", "--out", str(tmp_path / "e")]) == 0
    assert "seed 0: train 5, test 1 of 6 images" in capsys.readouterr().err
    spec = BenchSpec(backbones=("lite_medsam_test",), adapters=(AdapterChoice("frozen"),), policies=("native",),
                     resolutions=(32,), datasets=(str(root),), shots=(2,), seeds=(0,), steps=1, eval_limit=1,
                     throughput_batch=1, pretrained=False, name="nosplits")
    summary = run_bench(spec, tmp_path / "b", progress=False, report=False)
    assert summary.statuses == {"done": 1}
