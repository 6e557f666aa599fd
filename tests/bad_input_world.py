"""Tiny files and folders for the bad-input battery (tests/test_bad_inputs.py), made on demand in a temp folder.

Each ``World`` method writes one input (a dataset folder, an adapter file, a YAML file, a LabelMe folder, a
bench folder) the first time it is asked for and returns its path, so a case names what it needs and nothing
else is built. Everything is small: 40×32 images, the ``lite_medsam_test`` backbone at R=64.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

TINY_MODEL = ["--backbone", "lite_medsam_test", "--random-init", "--policy", "native", "-R", "64"]
H, W = 32, 40


def binary_item(seed: int, *, empty: bool = False, value: int = 255) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), dtype=np.uint8)
    if not empty:
        mask[8:20, 10:26] = value
    return image, mask


def write_dataset(root: Path, items: dict[str, tuple[np.ndarray, np.ndarray]], splits: dict[str, list[str]],
                  labels: list[str] | None = None) -> Path:
    for sub in ("images", "masks", "splits"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for item, (image, mask) in items.items():
        Image.fromarray(image).save(root / "images" / f"{item}.png")
        Image.fromarray(mask.astype(np.uint8), "L").save(root / "masks" / f"{item}.png")
    for split, ids in splits.items():
        (root / "splits" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    if labels is not None:
        (root / "labels.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(labels)))
    return root


class World:
    def __init__(self, root: Path):
        self.root = root
        self._made: dict[str, Path] = {}

    def _once(self, name: str, make) -> Path:  # noqa: ANN001
        if name not in self._made:
            self._made[name] = make(self.root / name)
        return self._made[name]

    def path(self, name: str) -> Path:
        """A fresh path that does not exist yet (for --out folders that must be created), unique per call."""
        self._fresh = getattr(self, "_fresh", 0) + 1
        return self.root / "fresh" / f"{name}_{self._fresh}"

    # -- datasets ---------------------------------------------------------------------------------------------
    def good_data(self) -> Path:
        """4 train + 2 test images with one rectangle each."""
        items = {f"i{k}": binary_item(k) for k in range(6)}
        return self._once("good_data", lambda p: write_dataset(
            p, items, {"train": ["i0", "i1", "i2", "i3"], "test": ["i4", "i5"]}))

    def empty_masks(self) -> Path:
        """Every mask is background."""
        items = {f"e{k}": binary_item(k, empty=True) for k in range(4)}
        return self._once("empty_masks", lambda p: write_dataset(p, items, {"train": ["e0", "e1"],
                                                                             "test": ["e2", "e3"]}))

    def some_empty(self) -> Path:
        """Train: 2 with an object, 2 without; test: 1 with, 1 without."""
        items = {"a": binary_item(0), "b": binary_item(1), "c": binary_item(2, empty=True),
                 "d": binary_item(3, empty=True), "t1": binary_item(4), "t2": binary_item(5, empty=True)}
        return self._once("some_empty", lambda p: write_dataset(p, items, {"train": ["a", "b", "c", "d"],
                                                                            "test": ["t1", "t2"]}))

    def labelled_0_255(self) -> Path:
        """labels.txt present but masks hold 0/255: 255 is ignore, nothing to score."""
        items = {f"l{k}": binary_item(k) for k in range(4)}
        return self._once("labelled_0_255", lambda p: write_dataset(
            p, items, {"train": ["l0", "l1"], "test": ["l2", "l3"]}, labels=["background", "polyp"]))

    def sixteen_bit(self) -> Path:
        """Grey 16-bit PNG images with values 1000..4000 (a cast to 8 bits would saturate them all)."""
        def make(p: Path) -> Path:
            items = {f"s{k}": binary_item(k) for k in range(3)}
            write_dataset(p, items, {"train": ["s0", "s1"], "test": ["s2"]})
            rng = np.random.default_rng(0)
            for k in range(3):
                grey = rng.integers(1000, 4000, size=(H, W)).astype(np.uint16)
                Image.fromarray(grey).save(p / "images" / f"s{k}.png")
            return p
        return self._once("sixteen_bit", make)

    def broken_data(self, kind: str) -> Path:
        """A dataset with one defect ``kind``."""
        def make(p: Path) -> Path:
            items = {f"b{k}": binary_item(k) for k in range(3)}
            write_dataset(p, items, {"train": ["b0", "b1"], "test": ["b2"]})
            if kind == "no_masks_dir":
                for f in (p / "masks").iterdir():
                    f.unlink()
                (p / "masks").rmdir()
            elif kind == "no_images_dir":
                for f in (p / "images").iterdir():
                    f.unlink()
                (p / "images").rmdir()
            elif kind == "missing_mask":
                (p / "masks" / "b0.png").unlink()
            elif kind == "missing_image":
                (p / "splits" / "train.txt").write_text("b0\nghost\n")
            elif kind == "mask_size":
                Image.fromarray(np.zeros((H + 3, W), np.uint8), "L").save(p / "masks" / "b0.png")
            elif kind == "mask_colour":
                rgb = np.zeros((H, W, 3), np.uint8)
                rgb[..., 0] = 255
                Image.fromarray(rgb).save(p / "masks" / "b0.png")
            elif kind == "mask_values":
                mask = np.zeros((H, W), np.uint8)
                mask[2:5, 2:5] = 7
                Image.fromarray(mask, "L").save(p / "masks" / "b0.png")
            elif kind == "labels_malformed":
                (p / "labels.txt").write_text("0 background\npolyp\n")
            elif kind == "labels_gap":
                (p / "labels.txt").write_text("0 background\n2 polyp\n")
            elif kind == "no_test":
                (p / "splits" / "test.txt").unlink()
            elif kind == "labels_background_only":
                (p / "labels.txt").write_text("0 background\n")
            elif kind == "labels_values":
                (p / "labels.txt").write_text("0 background\n1 polyp\n")
                mask = np.zeros((H, W), np.uint8)
                mask[2:5, 2:5] = 9
                Image.fromarray(mask, "L").save(p / "masks" / "b0.png")
            elif kind == "image_garbage":
                (p / "images" / "b0.png").write_bytes(b"this is not a png")
            elif kind == "mask_garbage":
                (p / "masks" / "b0.png").write_bytes(b"\x89PNG broken")
            elif kind == "split_empty":
                (p / "splits" / "train.txt").write_text("\n\n")
            elif kind == "split_duplicate":
                (p / "splits" / "train.txt").write_text("b0\nb1\nb0\n")
            elif kind == "two_images":
                Image.fromarray(items["b0"][0]).save(p / "images" / "b0.jpg")
            else:
                raise AssertionError(kind)
            return p
        return self._once(f"broken_{kind}", make)

    def a_file(self, name: str = "plain.txt", text: str = "not a folder") -> Path:
        def make(p: Path) -> Path:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
            return p
        return self._once(name, make)

    def finished_run(self) -> Path:
        """A folder that looks like a finished train run (metrics.json + adapter file)."""
        def make(p: Path) -> Path:
            p.mkdir(parents=True)
            (p / "metrics.json").write_text('{"mean_dice": 0.5}')
            (p / "adapter.safetensors").write_bytes(b"keep me")
            return p
        return self._once("finished_run", make)

    # -- configs ----------------------------------------------------------------------------------------------
    def yaml(self, name: str, text: str) -> Path:
        def make(p: Path) -> Path:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
            return p
        return self._once(f"yaml/{name}.yaml", make)

    # -- adapter files and checkpoints ------------------------------------------------------------------------
    def adapter(self) -> Path:
        """A LoRA (rank 2) adapter file for lite_medsam_test, native, R=64 (untrained: B = 0)."""
        def make(p: Path) -> Path:
            import adaptsam

            model = adaptsam.create_model("lite_medsam_test", pretrained=False, policy="native", resolution=64,
                                          adapter="lora", adapter_cfg={"rank": 2})
            return adaptsam.save_adapter(model, p)
        return self._once("adapters/lora.safetensors", make)

    def edited_adapter(self, kind: str) -> Path:
        """The adapter file with one defect ``kind`` (tensors or metadata edited)."""
        def make(p: Path) -> Path:
            import torch
            from safetensors import safe_open
            from safetensors.torch import save_file

            source = self.adapter()
            if kind == "truncated":
                p.write_bytes(source.read_bytes()[:100])
                return p
            with safe_open(str(source), framework="pt") as handle:
                meta = dict(handle.metadata())
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 - not a dict
            first = sorted(tensors)[0]
            if kind == "missing_tensor":
                tensors.pop(first)
            elif kind == "extra_tensor":
                tensors["image_encoder.not_there.weight"] = torch.zeros(2)
            elif kind == "shape":
                tensors[first] = torch.zeros(*[s + 1 for s in tensors[first].shape])
            elif kind == "nan":
                tensors[first] = torch.full_like(tensors[first], float("nan"))
            elif kind == "no_metadata":
                meta = {}
            elif kind == "version":
                meta["format_version"] = "99"
            elif kind == "other_backbone":
                meta["backbone"] = "vit_test"
            else:
                raise AssertionError(kind)
            p.parent.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(p), metadata=meta or None)
            return p
        return self._once(f"adapters/{kind}.safetensors", make)

    def checkpoint_of(self, backbone: str) -> Path:
        def make(p: Path) -> Path:
            import torch

            import adaptsam

            p.parent.mkdir(parents=True, exist_ok=True)
            torch.save(adaptsam.create_model(backbone, pretrained=False).state_dict(), p)
            return p
        return self._once(f"checkpoints/{backbone}.pth", make)

    # -- prompt files and images --------------------------------------------------------------------------------
    def image(self) -> Path:
        def make(p: Path) -> Path:
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(binary_item(9)[0]).save(p)
            return p
        return self._once("predict/img.png", make)

    def prompts(self, name: str, table: object, raw: str | None = None) -> Path:
        def make(p: Path) -> Path:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(raw if raw is not None else json.dumps(table))
            return p
        return self._once(f"prompts/{name}.json", make)

    # -- LabelMe ------------------------------------------------------------------------------------------------
    def labelme(self, name: str, shapes: list | None = None, *, data: dict | None = None, raw: str | None = None,
                image: bool = True) -> Path:
        """A LabelMe folder with one ``a.json`` (and ``a.png`` unless ``image=False``)."""
        def make(p: Path) -> Path:
            p.mkdir(parents=True)
            if image:
                Image.new("RGB", (20, 16), "white").save(p / "a.png")
            if raw is not None:
                (p / "a.json").write_text(raw)
            else:
                doc = {"imagePath": "a.png", "imageHeight": 16, "imageWidth": 20,
                       "shapes": shapes if shapes is not None else [
                           {"label": "cat", "points": [[2, 2], [10, 2], [10, 10]], "shape_type": "polygon"}]}
                doc.update(data or {})
                (p / "a.json").write_text(json.dumps(doc))
            return p
        return self._once(f"labelme/{name}", make)

    # -- bench folders ------------------------------------------------------------------------------------------
    def bench_dir(self, name: str, store: bytes | None = None) -> Path:
        def make(p: Path) -> Path:
            p.mkdir(parents=True)
            if store is not None:
                (p / "results.sqlite").write_bytes(store)
            return p
        return self._once(f"bench/{name}", make)
