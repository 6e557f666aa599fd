"""ImageMaskFolder: the layout, mask semantics, and one clear DataError per kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from adaptsam.data.folder import ImageMaskFolder, folder
from adaptsam.errors import DataError


def test_binary_folder_reads_samples(binary_folder):
    ds = ImageMaskFolder(binary_folder, "train")
    assert ds.name == "binary" and ds.split == "train" and ds.ids == ["a", "b"] and len(ds) == 2
    assert ds.classes == ("background", "foreground") and ds.foreground_classes == (1,) and ds.is_binary
    sample = ds[1]
    assert sample.image.dtype == np.uint8 and sample.image.shape == (6, 8, 3)
    assert sample.mask.dtype == np.int64 and set(np.unique(sample.mask)) == {0, 1}
    assert sample.mask[1:4, 2:5].all() and sample.mask.sum() == 9
    assert sample.meta["id"] == "b"
    assert sample.meta["image_path"].endswith("b.png") and sample.meta["mask_path"].endswith("b.png")
    np.testing.assert_array_equal(ds.mask_at(1), sample.mask)
    np.testing.assert_array_equal(ds[-1].mask, sample.mask)
    with pytest.raises(IndexError, match="2 samples"):
        ds[2]


def test_zero_one_masks_and_image_modes(make_dataset):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    mask = np.zeros((6, 8), np.uint8)
    mask[0, 0] = 1
    root = make_dataset("modes", {"g": (gray, mask)}, {"train": ["g"]})
    rgba = np.dstack([np.full((6, 8, 3), 7, np.uint8), np.full((6, 8), 100, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "images" / "r.png")
    Image.fromarray(mask, "L").save(root / "masks" / "r.png")
    (root / "splits" / "train.txt").write_text("g\n\nr\n")  # blank lines are skipped
    ds = ImageMaskFolder(root)
    image = ds[0].image
    assert image.shape == (6, 8, 3) and (image[..., 0] == gray).all() and (image[..., 2] == gray).all()
    assert ds[1].image.shape == (6, 8, 3) and (ds[1].image == 7).all()
    assert ds[0].mask[0, 0] == 1 and ds[0].mask.sum() == 1


def test_labels_folder(make_dataset, make_item):
    image, _ = make_item(0)
    mask = np.zeros((6, 8), np.uint8)
    mask[0] = 2
    mask[1] = 255
    root = make_dataset("labelled", {"a": (image, mask)}, {"val": ["a"]}, labels=["Background", "cat", "dog"])
    ds = ImageMaskFolder(root, "val")
    assert ds.classes == ("Background", "cat", "dog") and ds.foreground_classes == (1, 2) and not ds.is_binary
    assert set(np.unique(ds[0].mask)) == {0, 2, 255}


def test_labels_without_background_are_all_foreground(make_dataset, make_item):
    image, _ = make_item(0)
    root = make_dataset("sky", {"a": (image, np.zeros((6, 8)))}, {"train": ["a"]}, labels=["Sky", "Road"])
    assert ImageMaskFolder(root).foreground_classes == (0, 1)


# -- one error per kind of bad input ---------------------------------------------------------------------------
def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        ImageMaskFolder(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)


def test_root_not_in_layout(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError) as info:
        ImageMaskFolder(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "masks/" in message and "splits/" in message


def test_unknown_split_lists_available(binary_folder):
    with pytest.raises(DataError) as info:
        ImageMaskFolder(binary_folder, "val")
    message = str(info.value)
    assert "'val'" in message and "test, train" in message and str(binary_folder / "splits" / "val.txt") in message


def test_empty_split_file(binary_folder):
    (binary_folder / "splits" / "val.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="empty") as info:
        ImageMaskFolder(binary_folder, "val")
    assert str(binary_folder / "splits" / "val.txt") in str(info.value)


def test_duplicate_id_in_split(binary_folder):
    (binary_folder / "splits" / "train.txt").write_text("a\nb\na\n")
    with pytest.raises(DataError, match="twice") as info:
        ImageMaskFolder(binary_folder)
    assert "lines 1 and 3" in str(info.value) and str(binary_folder / "splits" / "train.txt") in str(info.value)


def test_id_without_image(binary_folder):
    (binary_folder / "splits" / "train.txt").write_text("a\nghost\n")
    with pytest.raises(DataError, match="no image") as info:
        ImageMaskFolder(binary_folder)
    assert "ghost" in str(info.value) and str(binary_folder / "splits" / "train.txt") in str(info.value)


def test_image_without_mask(binary_folder):
    (binary_folder / "masks" / "b.png").unlink()
    with pytest.raises(DataError, match="no mask") as info:
        ImageMaskFolder(binary_folder)
    message = str(info.value)
    assert str(binary_folder / "images" / "b.png") in message and str(binary_folder / "masks" / "b.png") in message


def test_two_images_for_one_id(binary_folder, make_item):
    Image.fromarray(make_item(5)[0]).save(binary_folder / "images" / "a.jpg")
    with pytest.raises(DataError, match="more than one image") as info:
        ImageMaskFolder(binary_folder)
    assert "a.jpg" in str(info.value) and "a.png" in str(info.value)


def test_mask_size_differs_from_image(binary_folder):
    mask_path = binary_folder / "masks" / "b.png"
    Image.fromarray(np.zeros((5, 8), np.uint8), "L").save(mask_path)
    ds = ImageMaskFolder(binary_folder)
    ds[0]  # other samples are unaffected
    for read in (lambda: ds[1], lambda: ds.mask_at(1)):
        with pytest.raises(DataError) as info:
            read()
        message = str(info.value)
        assert str(mask_path) in message and str(binary_folder / "images" / "b.png") in message
        assert "8×5" in message and "8×6" in message


def test_mask_value_not_in_labels(make_dataset, make_item):
    image, _ = make_item(0)
    mask = np.zeros((6, 8), np.uint8)
    mask[0, :2] = 7
    mask[1, 0] = 3
    root = make_dataset("bad_values", {"a": (image, mask)}, {"train": ["a"]}, labels=["background", "cat", "dog"])
    ds = ImageMaskFolder(root)
    with pytest.raises(DataError) as info:
        ds[0]
    message = str(info.value)
    assert str(root / "masks" / "a.png") in message and str(root / "labels.txt") in message
    assert "3, 7" in message and "0..2" in message


def test_binary_mask_with_grey_values(binary_folder):
    mask_path = binary_folder / "masks" / "a.png"
    mask = np.zeros((6, 8), np.uint8)
    mask[0, 0] = 128
    Image.fromarray(mask, "L").save(mask_path)
    with pytest.raises(DataError, match="binary") as info:
        ImageMaskFolder(binary_folder).mask_at(0)
    assert str(mask_path) in str(info.value) and "128" in str(info.value)


def test_colour_mask_is_refused_but_grey_rgb_accepted(binary_folder):
    mask_path = binary_folder / "masks" / "a.png"
    grey = np.zeros((6, 8, 3), np.uint8)
    grey[2, 3] = 255
    Image.fromarray(grey, "RGB").save(mask_path)
    assert ImageMaskFolder(binary_folder).mask_at(0).sum() == 1
    grey[2, 3, 0] = 0
    Image.fromarray(grey, "RGB").save(mask_path)
    with pytest.raises(DataError, match="colour") as info:
        ImageMaskFolder(binary_folder).mask_at(0)
    assert str(mask_path) in str(info.value)


def test_corrupt_image(binary_folder):
    path = binary_folder / "images" / "a.png"
    path.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="Cannot read image") as info:
        ImageMaskFolder(binary_folder)[0]
    assert str(path) in str(info.value) and info.value.__cause__ is not None


def test_truncated_mask(binary_folder):
    path = binary_folder / "masks" / "b.png"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="Cannot read mask") as info:
        ImageMaskFolder(binary_folder)[1]
    assert str(path) in str(info.value) and info.value.__cause__ is not None


@pytest.mark.parametrize(("content", "line"), [
    ("0 background\ncat\n", 2),
    ("0 background\nx cat\n", 2),
    ("0 background\n\n0 cat\n", 3),
    ("0 background\n255 cat\n", 2),
])
def test_malformed_labels(binary_folder, content, line):
    (binary_folder / "labels.txt").write_text(content)
    with pytest.raises(DataError) as info:
        ImageMaskFolder(binary_folder)
    assert str(binary_folder / "labels.txt") in str(info.value) and f"line {line}" in str(info.value)


def test_labels_with_gap(binary_folder):
    (binary_folder / "labels.txt").write_text("0 background\n2 dog\n")
    with pytest.raises(DataError, match="no line for index 1") as info:
        ImageMaskFolder(binary_folder)
    assert str(binary_folder / "labels.txt") in str(info.value)


def test_folder_factory(binary_folder):
    assert folder("test", root=binary_folder).ids == ["c"]
    assert folder(root=binary_folder, name="mine").name == "mine"
    with pytest.raises(DataError, match="root=PATH"):
        folder("train")
