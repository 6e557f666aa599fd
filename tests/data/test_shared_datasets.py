"""The shared datasets: how they are found ($ADAPTSAM_DATA), and checks on the real files when present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adaptsam.data import LowResDataset
from adaptsam.data.shared import DATA_ENV, camvid, kvasir_seg, weizmann_horses
from adaptsam.errors import DataError


def test_unset_env_says_how_to_fix(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(DataError) as info:
        kvasir_seg("test")
    message = str(info.value)
    assert DATA_ENV in message and "kvasir_seg/" in message and "root=PATH" in message


def test_missing_dataset_folder_names_it(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(DataError) as info:
        weizmann_horses()
    assert str(tmp_path / "weizmann_horses") in str(info.value) and DATA_ENV in str(info.value)


def test_found_under_env_or_given_root(monkeypatch, tmp_path, make_dataset, make_item):
    root = make_dataset("camvid", {"x": make_item(0)}, {"test": ["x"]}, labels=["Sky", "Road"])
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    ds = camvid("test")
    assert ds.name == "camvid" and ds.ids == ["x"]
    monkeypatch.delenv(DATA_ENV)
    assert camvid("test", root=root).name == "camvid"


def test_real_kvasir_through_lowres(shared_data):
    base = kvasir_seg("test")
    assert len(base) == 120 and base.is_binary and base.foreground_classes == (1,)
    subset = LowResDataset(base, 128, indices=[0, 1, 2, 3])
    batch = torch.utils.data.default_collate([subset[i] for i in range(len(subset))])
    assert batch["image"].shape == (4, 3, 128, 128) and batch["image"].dtype == torch.float32
    assert batch["image"].min() >= 0.0 and batch["image"].max() <= 1.0 and batch["image"].max() > 0.5
    assert batch["mask"].shape == (4, 128, 128) and set(batch["mask"].unique().tolist()) <= {0, 1, 255}
    assert batch["classes"].tolist() == [[1]] * 4  # every Kvasir image holds a polyp
    for i in range(4):
        h, w = batch["valid_hw"][i].tolist()
        assert max(h, w) == 128
        assert (batch["mask"][i, :h, :w] != 255).all() and (batch["mask"][i, h:] == 255).all()
        x0, y0, x1, y1 = batch["boxes"][i, 0].tolist()
        assert 0 <= x0 <= x1 < w and 0 <= y0 <= y1 < h
        x, y = batch["points"][i, 0, 0].round().long().tolist()
        assert batch["mask"][i, y, x] == 1
    assert batch["id"][0] == base.ids[0]


def test_real_camvid_labels(shared_data):
    ds = camvid("val")
    assert len(ds) == 101 and len(ds.classes) == 11 and ds.classes[0] == "Sky" and ds.classes[-1] == "Bicyclist"
    assert ds.foreground_classes == tuple(range(11)) and not ds.is_binary
    mask = ds.mask_at(0)
    assert mask.dtype == np.int64 and set(np.unique(mask).tolist()) <= set(range(11)) | {255}
