"""open_dataset: the meaning of --data SPEC (path, registered name, folder under $ADAPTSAM_DATA)."""

from __future__ import annotations

import pytest

from adaptsam.data import ImageMaskFolder, SyntheticShapes, open_dataset
from adaptsam.data.shared import DATA_ENV
from adaptsam.errors import DataError, UnknownNameError
from adaptsam.registry import datasets


def test_by_registered_name():
    ds = open_dataset("synthetic_2class", "val", n=3, size=32)
    assert isinstance(ds, SyntheticShapes) and ds.split == "val" and len(ds) == 3 and ds.num_classes == 2


def test_by_path(binary_folder, monkeypatch):
    assert isinstance(open_dataset(str(binary_folder), "test"), ImageMaskFolder)
    monkeypatch.chdir(binary_folder.parent)
    ds = open_dataset("./binary", "train")
    assert ds.ids == ["a", "b"] and ds.name == "binary"
    assert open_dataset("binary", "train").ids == ["a", "b"]  # an existing folder wins over the registry


def test_a_path_that_does_not_exist_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(str(tmp_path / "missing"))


def test_folder_under_data_home(monkeypatch, tmp_path, make_dataset, make_item):
    make_dataset("my_polyps", {"a": make_item(0)}, {"train": ["a"]})
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    ds = open_dataset("my_polyps")
    assert isinstance(ds, ImageMaskFolder) and ds.name == "my_polyps" and ds.ids == ["a"]


def test_unknown_name_suggests_close_matches(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownNameError) as info:
        open_dataset("synthetc")
    message = str(info.value)
    assert "Did you mean 'synthetic'" in message and DATA_ENV in message
    assert isinstance(info.value, KeyError)


def test_every_registered_dataset_factory_follows_the_contract():
    import inspect

    for name in ["folder", "kvasir_seg", "weizmann_horses", "camvid", "synthetic", "synthetic_2class"]:
        factory = datasets.get(name)
        signature = inspect.signature(factory)
        assert signature.parameters["split"].default == "train"
        assert signature.parameters["root"].kind is inspect.Parameter.KEYWORD_ONLY
        assert signature.parameters["root"].default is None
        doc = (factory.__doc__ or "").strip()
        assert doc and len(doc.splitlines()) == 1, name
