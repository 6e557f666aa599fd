"""COCO import: polygons, RLE, crowd, overlaps and unannotated images pixel-exactly; a kvasir round trip; bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from adaptsam.data.coco import import_coco, split_name
from adaptsam.data.folder import ImageMaskFolder, read_mask
from adaptsam.errors import ConfigError, DataError

pytest.importorskip("pycocotools")
from pycocotools import mask as mask_api  # noqa: E402

H, W = 12, 16
CATEGORIES = [{"id": 1, "name": "cat", "supercategory": "animal"},
              {"id": 7, "name": "car", "supercategory": "vehicle"},
              {"id": 3, "name": "dog", "supercategory": "animal"}]


def _rect(x0, y0, x1, y1):
    """A polygon with integer corners: COCO rasterises it to rows y0..y1-1, columns x0..x1-1."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _runs(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts, computed here (column-major runs starting with a 0-run)."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    changes = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))  # run boundaries, first run of zeros
    return np.diff(np.r_[0, changes]).tolist()[: len(changes)]


def _coco(tmp_path):
    images = tmp_path / "imgs"
    (images / "sub").mkdir(parents=True)
    for name in ("a.png", "b.jpg", "sub/c.png"):
        Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(images / name)
    rle_mask = np.zeros((H, W), bool)
    rle_mask[2:9, 1:4] = True
    rle_mask[5, 10] = True
    crowd = np.zeros((H, W), bool)
    crowd[6:12, 8:16] = True
    crowd_rle = mask_api.encode(np.asfortranarray(crowd.astype(np.uint8)))
    crowd_rle["counts"] = crowd_rle["counts"].decode()
    doc = {
        "images": [{"id": 10, "file_name": "a.png", "height": H, "width": W},
                   {"id": 11, "file_name": "b.jpg", "height": H, "width": W},
                   {"id": 12, "file_name": "sub/c.png", "height": H, "width": W}],
        "annotations": [
            # image a: a small cat, then a big dog over it (file order and id order would both put the dog on top)
            {"id": 1, "image_id": 10, "category_id": 1, "iscrowd": 0, "segmentation": [_rect(4, 3, 7, 6)]},
            {"id": 2, "image_id": 10, "category_id": 3, "iscrowd": 0, "segmentation": [_rect(2, 1, 12, 10)]},
            # image b: a car as uncompressed RLE, and a crowd of cats (compressed RLE) partly under it
            {"id": 3, "image_id": 11, "category_id": 7, "iscrowd": 0,
             "segmentation": {"size": [H, W], "counts": _runs(rle_mask)}},
            {"id": 4, "image_id": 11, "category_id": 1, "iscrowd": 1, "segmentation": crowd_rle},
        ],
        "categories": CATEGORIES,
    }
    expected_a = np.zeros((H, W), np.uint8)
    expected_a[1:10, 2:12] = 3  # dog (class 3 in COCO order cat, car, dog)
    expected_a[3:6, 4:7] = 1  # the smaller cat on top
    expected_b = np.zeros((H, W), np.uint8)
    expected_b[crowd] = 255
    expected_b[rle_mask] = 2  # a real instance wins over a crowd region
    expected = {"a": expected_a, "b": expected_b, "sub_c": np.zeros((H, W), np.uint8)}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    return path, images, doc, expected


def test_import_is_pixel_exact(tmp_path):
    path, images, _, expected = _coco(tmp_path)
    out = import_coco(path, images, tmp_path / "out", train_fraction=0.67)
    assert (out / "labels.txt").read_text().split() == ["0", "background", "1", "cat", "2", "car", "3", "dog"]
    for stem, want in expected.items():
        np.testing.assert_array_equal(read_mask(out / "masks" / f"{stem}.png"), want, err_msg=stem)
    assert (out / "images" / "b.jpg").read_bytes() == (images / "b.jpg").read_bytes()  # copied as is
    train, test = ImageMaskFolder(out, "train"), ImageMaskFolder(out, "test")
    assert sorted(train.ids + test.ids) == ["a", "b", "sub_c"] and len(test) == 1
    assert test[0].mask.shape == (H, W)


def test_class_modes_categories_min_area_and_drop_empty(tmp_path):
    path, images, _, expected = _coco(tmp_path)
    out = import_coco(path, images, tmp_path / "super", classes="supercategory")
    assert (out / "labels.txt").read_text().split() == ["0", "background", "1", "animal", "2", "vehicle"]
    want = expected["a"].copy()
    want[want == 3] = 1
    np.testing.assert_array_equal(read_mask(out / "masks" / "a.png"), want)

    out = import_coco(path, images, tmp_path / "bin", classes="binary", drop_empty=True)
    assert (out / "labels.txt").read_text().split() == ["0", "background", "1", "foreground"]
    assert sorted(p.stem for p in (out / "masks").iterdir()) == ["a", "b"]  # sub/c had no annotation
    np.testing.assert_array_equal(read_mask(out / "masks" / "b.png"), np.where(expected["b"] == 2, 1,
                                                                               expected["b"]))

    out = import_coco(path, images, tmp_path / "dogs", categories=["dog", "cat"], min_area=10)
    assert (out / "labels.txt").read_text().split() == ["0", "background", "1", "dog", "2", "cat"]
    got = read_mask(out / "masks" / "a.png")
    assert set(np.unique(got)) == {0, 1}  # the 9-pixel cat is under --min-area 10: the dog shows through
    assert (read_mask(out / "masks" / "b.png") == 255).sum() > 0  # crowd kept as ignore


def test_several_files_become_splits(tmp_path):
    path, images, doc, _ = _coco(tmp_path)
    train = {**doc, "images": doc["images"][:2], "annotations": doc["annotations"]}
    val = {**doc, "images": doc["images"][2:], "annotations": []}
    (tmp_path / "instances_train2017.json").write_text(json.dumps(train))
    (tmp_path / "instances_val2017.json").write_text(json.dumps(val))
    assert split_name("instances_val2017.json") == "val" and split_name("train.json") == "train"
    out = import_coco([tmp_path / "instances_train2017.json", tmp_path / "instances_val2017.json"], images,
                      tmp_path / "out")
    assert ImageMaskFolder(out, "train").ids == ["a", "b"] and ImageMaskFolder(out, "val").ids == ["sub_c"]


def test_cli(tmp_path, capsys):
    from adaptsam.cli import main

    path, images, _, expected = _coco(tmp_path)
    assert main(["import", "coco", str(path), str(images), str(tmp_path / "out"), "--classes", "supercategory"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["import", "coco", str(path), str(images), str(tmp_path / "out2"), "--categories", "horse"]) == 2
    assert "horse" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    (lambda d: d["images"][0].update(file_name="../a.png"), "'..' are refused"),
    (lambda d: d["images"][0].update(file_name="/etc/a.png"), "absolute paths"),
    (lambda d: d["images"][0].update(file_name="missing.png"), "not in"),
    (lambda d: d["images"][0].update(width=99), "99×12"),
    (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3]]), "annotation id 1: polygon 0"),
    (lambda d: d["annotations"][0].update(category_id=99), "annotation id 1 has category_id 99"),
    (lambda d: d["annotations"][0].update(image_id=5), "annotation id 1 has image_id 5"),
    (lambda d: d["annotations"][0].update(iscrowd=2), "iscrowd 2"),
    (lambda d: d["annotations"][2]["segmentation"].update(size=[5, 5]), "annotation id 3 has an RLE of size"),
    (lambda d: d["annotations"][2]["segmentation"]["counts"].append(4), "expected height × width = 192"),
    (lambda d: d["annotations"][3]["segmentation"].update(counts="0000"), "RLE counts summing to 0"),
    (lambda d: d["annotations"][3]["segmentation"].update(counts="\x01"), "annotation id 4 has a character"),
    (lambda d: d.pop("categories"), "no 'categories' list"),
])
def test_bad_annotations_name_file_id_and_expectation(tmp_path, change, message):
    path, images, doc, _ = _coco(tmp_path)
    change(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError) as info:
        import_coco(path, images, tmp_path / "out")
    assert message in str(info.value) and str(path) in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_bad_options(tmp_path):
    path, images, _, _ = _coco(tmp_path)
    with pytest.raises(ConfigError, match="--classes"):
        import_coco(path, images, tmp_path / "o", classes="color")
    with pytest.raises(ConfigError, match="--min-area"):
        import_coco(path, images, tmp_path / "o", min_area=-1)


def test_kvasir_round_trip(tmp_path, shared_data):
    """kvasir_seg masks → COCO RLE (pycocotools.mask.encode) → import → the same masks."""
    source = ImageMaskFolder(shared_data / "kvasir_seg", "test")
    images, annotations = [], []
    for i in range(5):
        mask = read_mask(source.mask_paths[i])
        height, width = mask.shape
        images.append({"id": i, "file_name": source.image_paths[i].name, "height": height, "width": width})
        rle = mask_api.encode(np.asfortranarray((mask == 255).astype(np.uint8)))
        rle["counts"] = rle["counts"].decode()
        annotations.append({"id": 100 + i, "image_id": i, "category_id": 1, "iscrowd": 0, "segmentation": rle})
    path = tmp_path / "kvasir.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "polyp"}]}))
    out = import_coco(path, shared_data / "kvasir_seg" / "images", tmp_path / "out", classes="binary")
    for i in range(5):
        want = (read_mask(source.mask_paths[i]) == 255).astype(np.uint8)
        np.testing.assert_array_equal(read_mask(out / "masks" / f"{source.ids[i]}.png"), want)
