"""LabelMe import: pixel-exact masks against an independent rasteriser, labels, splits, and errors."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adaptsam.data import ImageMaskFolder, import_labelme
from adaptsam.errors import DataError

WIDTH, HEIGHT = 20, 16
# non-convex (a "U"), with vertices on pixel centres, on pixel corners and in between
U_SHAPE = [[2, 2], [8.5, 2], [8.5, 12.5], [6, 12.5], [6, 5.5], [4.5, 5.5], [4.5, 13], [2, 13]]
TRIANGLE = [[5, 1], [14.25, 8.5], [3.7, 10.2]]  # overlaps the U; painted later, so it wins
# a pentagram (self-intersecting): by the even-odd rule its centre pentagon is a hole
STAR = [[round(13.5 + 7 * np.sin(k * 4 * np.pi / 5), 2), round(8 - 7 * np.cos(k * 4 * np.pi / 5), 2)] for k in range(5)]


def reference_inside(polygon: list[list[float]], x: float, y: float) -> bool:
    """Textbook even-odd crossing test for one point (written independently of adaptsam)."""
    inside = False
    j = len(polygon) - 1
    for i in range(len(polygon)):
        xi, yi = polygon[i]
        xj, yj = polygon[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def reference_mask(shapes: list[tuple[int, list[list[float]]]]) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    for value, polygon in shapes:
        for r in range(HEIGHT):
            for c in range(WIDTH):
                if reference_inside(polygon, c + 0.5, r + 0.5):
                    mask[r, c] = value
    return mask


def write_json(folder: Path, stem: str, shapes: list[dict], *, image: bool = True, embed: bool = False,
               size: tuple[int, int] = (HEIGHT, WIDTH)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(stem)).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    record = {"version": "5.4.1", "imagePath": f"{stem}.jpg", "imageHeight": HEIGHT, "imageWidth": WIDTH,
              "shapes": shapes, "imageData": None}
    if image:
        Image.fromarray(pixels).save(folder / f"{stem}.jpg")
    if embed:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        record["imageData"] = base64.b64encode(buffer.getvalue()).decode()
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(record))
    return path


def polygon(label: str, points, shape_type: str | None = "polygon") -> dict:
    shape = {"label": label, "points": points, "group_id": None, "flags": {}}
    if shape_type is not None:
        shape["shape_type"] = shape_type
    return shape


def test_masks_match_an_independent_rasterisation(tmp_path):
    src = tmp_path / "src"
    write_json(src, "one", [polygon("cat", U_SHAPE), polygon("dog", TRIANGLE, shape_type=None)])
    write_json(src, "two", [polygon("dog", STAR), polygon("cat", [[1.2, 9.7], [6.5, 15.5]], "rectangle")])
    dst = import_labelme(src, tmp_path / "out", test_fraction=0.0)

    assert (dst / "labels.txt").read_text() == "0 background\n1 cat\n2 dog\n"  # sorted unique labels
    one = np.asarray(Image.open(dst / "masks" / "one.png"))
    expected_one = reference_mask([(1, U_SHAPE), (2, TRIANGLE)])
    np.testing.assert_array_equal(one, expected_one)
    assert (one == 1).sum() > 20 and (one == 2).sum() > 20 and one[10, 4] == 0 and one[10, 3] == 1  # U's notch

    two = np.asarray(Image.open(dst / "masks" / "two.png"))
    rectangle = [[1.2, 9.7], [6.5, 9.7], [6.5, 15.5], [1.2, 15.5]]
    np.testing.assert_array_equal(two, reference_mask([(2, STAR), (1, rectangle)]))
    assert two[8, 13] == 0 and two[3, 13] == 2  # the pentagram's centre is a hole, its top point is filled
    # centres strictly inside, plus the half-open rule: row 15's centre (y = 15.5) lies on the bottom edge → out
    assert (two[10:15, 1:6] == 1).all() and (two[:, 6] != 1).all() and (two[9] != 1).all() and (two[15] != 1).all()

    ds = ImageMaskFolder(dst, "train")
    assert ds.ids == ["one", "two"] and ds.classes == ("background", "cat", "dog")
    assert ds[0].image.shape == (HEIGHT, WIDTH, 3)
    assert (dst / "images" / "one.jpg").read_bytes() == (src / "one.jpg").read_bytes()  # copied, not re-encoded


def test_random_polygons_match_the_reference():
    """Vertices on a quarter-pixel grid hit every tie (centres exactly on edges and vertices)."""
    from adaptsam.data.labelme import polygon_mask

    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(3, 9))
        points = (rng.integers(-8, 4 * WIDTH + 8, size=(n, 2)) / 4.0).tolist()
        expected = reference_mask([(1, points)]).astype(bool)
        np.testing.assert_array_equal(polygon_mask(np.array(points), HEIGHT, WIDTH), expected)


def test_given_label_order_and_background_shapes(tmp_path):
    src = tmp_path / "src"
    write_json(src, "a", [polygon("cat", [[0, 0], [20, 0], [20, 16], [0, 16]]),
                          polygon("Background", [[5, 5], [10, 5], [10, 10], [5, 10]])])
    dst = import_labelme(src, tmp_path / "out", labels=["dog", "cat"], test_fraction=0.0)
    assert (dst / "labels.txt").read_text() == "0 background\n1 dog\n2 cat\n"
    mask = np.asarray(Image.open(dst / "masks" / "a.png"))
    assert (mask[5:10, 5:10] == 0).all() and (mask == 2).sum() == HEIGHT * WIDTH - 25


def test_embedded_image_data(tmp_path):
    src = tmp_path / "src"
    write_json(src, "emb", [polygon("cat", U_SHAPE)], image=False, embed=True)
    dst = import_labelme(src, tmp_path / "out", test_fraction=0.0)
    assert (dst / "images" / "emb.png").is_file()
    assert np.asarray(Image.open(dst / "images" / "emb.png")).shape == (HEIGHT, WIDTH, 3)


def test_seeded_split_keeps_a_training_image(tmp_path):
    src = tmp_path / "src"
    for i in range(10):
        write_json(src, f"img{i}", [polygon("cat", TRIANGLE)])
    first = import_labelme(src, tmp_path / "a", test_fraction=0.3, seed=1)
    again = import_labelme(src, tmp_path / "b", test_fraction=0.3, seed=1)
    test_ids = (first / "splits" / "test.txt").read_text().split()
    train_ids = (first / "splits" / "train.txt").read_text().split()
    assert len(test_ids) == 3 and len(train_ids) == 7 and not set(test_ids) & set(train_ids)
    assert test_ids == (again / "splits" / "test.txt").read_text().split()
    others = {tuple((import_labelme(src, tmp_path / f"s{seed}", test_fraction=0.3, seed=seed) / "splits" /
                     "test.txt").read_text().split()) for seed in range(2, 6)}
    assert len(others | {tuple(test_ids)}) > 1  # the seed matters

    single = tmp_path / "single"
    write_json(single, "only", [polygon("cat", TRIANGLE)])
    out = import_labelme(single, tmp_path / "single_out", test_fraction=0.9)
    assert (out / "splits" / "train.txt").read_text().split() == ["only"]
    assert not (out / "splits" / "test.txt").exists()


def test_label_not_in_labels(tmp_path):
    src = tmp_path / "src"
    path = write_json(src, "a", [polygon("cat", U_SHAPE), polygon("horse", TRIANGLE)])
    with pytest.raises(DataError) as info:
        import_labelme(src, tmp_path / "out", labels=["cat"])
    assert str(path) in str(info.value) and "'horse'" in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing written before every file checked


def test_unsupported_shape_type(tmp_path):
    src = tmp_path / "src"
    path = write_json(src, "a", [polygon("cat", U_SHAPE), polygon("ball", [[5, 5], [8, 5]], "circle")])
    with pytest.raises(DataError) as info:
        import_labelme(src, tmp_path / "out")
    message = str(info.value)
    assert str(path) in message and "#1" in message and "'circle'" in message and "'ball'" in message


def test_missing_image(tmp_path):
    src = tmp_path / "src"
    path = write_json(src, "a", [polygon("cat", U_SHAPE)], image=False)
    with pytest.raises(DataError) as info:
        import_labelme(src, tmp_path / "out")
    assert str(path) in str(info.value) and str(src / "a.jpg") in str(info.value)


def test_declared_size_mismatch(tmp_path):
    src = tmp_path / "src"
    path = write_json(src, "a", [polygon("cat", U_SHAPE)], size=(HEIGHT + 1, WIDTH))
    with pytest.raises(DataError) as info:
        import_labelme(src, tmp_path / "out")
    assert str(path) in str(info.value) and str(src / "a.jpg") in str(info.value) and "20×17" in str(info.value)


def test_bad_inputs(tmp_path):
    src = tmp_path / "src"
    with pytest.raises(DataError, match="does not exist"):
        import_labelme(src, tmp_path / "out")
    src.mkdir()
    with pytest.raises(DataError, match="no \\*.json"):
        import_labelme(src, tmp_path / "out")
    write_json(src, "a", [polygon("cat", [[1, 1], [5, 5]])])
    with pytest.raises(DataError, match="at least 3"):
        import_labelme(src, tmp_path / "out")
    (src / "a.json").write_text("{not json")
    with pytest.raises(DataError, match=str(src / "a.json")):
        import_labelme(src, tmp_path / "out")
    write_json(src, "a", [polygon("cat", U_SHAPE)])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(DataError, match="not empty"):
        import_labelme(src, tmp_path / "full")
    with pytest.raises(ValueError, match="background"):
        import_labelme(src, tmp_path / "out", labels=["background", "cat"])
