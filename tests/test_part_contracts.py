"""The policy and dataset contracts (``adaptsam.testing.check_policy`` / ``check_dataset``) on every registered one.

Generated from the registry, so a plugin's policy or dataset is tested here as soon as it is installed. A
dataset that needs ``$ADAPTSAM_DATA`` is skipped with its own error as the reason when that is unset; one
that needs a folder (``root=``) gets a small one written here. Deliberately broken parts (registered in
process) show that each check fails, and says why, when a part breaks its contract.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import numpy as np
import pytest
from PIL import Image

import adaptsam
from adaptsam import registry
from adaptsam.data.shared import DATA_ENV
from adaptsam.data.synthetic import SyntheticShapes
from adaptsam.errors import DataError, IncompatibleError
from adaptsam.policies.native import NativePolicy
from adaptsam.policies.upsample import UpsamplePolicy
from adaptsam.testing import check_dataset, check_policy


# -- policies ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["vit_test", "lite_medsam_test"])
@pytest.mark.parametrize("policy", registry.policies.names())
def test_policy_contract(policy, backbone):
    try:
        adaptsam.create_model(backbone, pretrained=False, policy=policy, resolution=64)
    except IncompatibleError as exc:  # a policy may refuse a backbone, with the reason
        pytest.skip(f"{policy} refuses {backbone}: {exc}")
    check_policy(policy, backbone)


@pytest.mark.parametrize(("policy", "options"), [
    ("upsample", {"interpolation": "bicubic"}),
    ("upsample", {"framing": "stretch"}),
    ("native", {"match_window": True}),
])
def test_policy_contract_with_options(policy, options):
    check_policy(policy, "vit_test", policy_cfg=options)


@dataclass(frozen=True)
class NaiveBoxes(UpsamplePolicy):
    """Scales boxes by design/R, dropping the pixels a box's last row and column cover (a real past bug)."""

    name = "broken_naive_boxes"

    def prompts_to_model(self, prompts, model, valid_hw=None):
        s = model.design_size / model.resolution
        return replace(prompts, boxes=prompts.boxes * s, point_coords=prompts.point_coords * s)


@dataclass(frozen=True)
class FlippedOutput(NativePolicy):
    """Maps logits back mirrored."""

    name = "broken_flipped_output"

    def logits_to_output(self, logits, model):
        return super().logits_to_output(logits, model).flip(-1)


@dataclass(frozen=True)
class TupleOption(NativePolicy):
    """An option JSON gives back as a list, so a rebuilt policy differs from the saved one."""

    name = "broken_tuple_option"
    windows: tuple = (4, 8)


@dataclass(frozen=True)
class NoRangeCheck(NativePolicy):
    """Accepts any resolution."""

    name = "broken_no_range_check"

    def validate(self, model, resolution):
        pass


@dataclass(frozen=True)
class WrongName(NativePolicy):
    name = "broken_other_name"


@contextlib.contextmanager
def registered(kind: str, name: str, obj):
    reg = registry.REGISTRIES[kind]
    reg.register(name, obj)
    try:
        yield name
    finally:
        reg.unregister(name)


@pytest.mark.parametrize(("name", "cls", "match"), [
    ("broken_naive_boxes", NaiveBoxes, "prompts and images must map alike"),
    ("broken_flipped_output", FlippedOutput, "on the wrong side after logits_to_output"),
    ("broken_tuple_option", TupleOption, "JSON round trip"),
    ("broken_no_range_check", NoRangeCheck, "expected an IncompatibleError or ConfigError"),
    ("broken_wrong_name", WrongName, "adapter files record the name"),
])
def test_check_policy_catches_a_broken_policy(name, cls, match):
    with registered("policy", name, cls), pytest.raises(AssertionError, match=match):
        check_policy(name, "vit_test", resolutions=(64,))


# -- datasets ------------------------------------------------------------------------------------------------
def write_folder(root, labelled: bool):
    """A 5-image dataset in the folder layout (train 3, test 2); with ``labelled``, 3 classes and some 255."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "splits").mkdir()
    ids = [f"img{i}" for i in range(5)]
    for i, item in enumerate(ids):
        h, w = 20 + i, 30
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"{item}.png")
        mask = np.zeros((h, w), np.uint8)
        mask[4:12, 5:20] = 2 if labelled else 255
        if labelled:
            mask[0, :] = 255
            mask[14:, :4] = 1
        Image.fromarray(mask).save(root / "masks" / f"{item}.png")
    (root / "splits" / "train.txt").write_text("\n".join(ids[:3]) + "\n")
    (root / "splits" / "test.txt").write_text("\n".join(ids[3:]) + "\n")
    if labelled:
        (root / "labels.txt").write_text("0 background\n1 grass\n2 horse\n")
    return root


@pytest.mark.parametrize("dataset", registry.datasets.names())
def test_dataset_contract(dataset, tmp_path, monkeypatch):
    try:
        registry.datasets.get(dataset)("train")
        options = {}
    except DataError as exc:
        if DATA_ENV in str(exc):
            pytest.skip(str(exc))
        options = {"root": write_folder(tmp_path / "binary", labelled=False)}  # a factory that needs a folder
    check_dataset(dataset, options=options)


def test_dataset_contract_on_a_labelled_folder(tmp_path):
    check_dataset("folder", options={"root": write_folder(tmp_path / "labelled", labelled=True)})


class _Broken(SyntheticShapes):
    """The synthetic set with one contract broken (chosen by ``how``)."""

    how = ""

    def __getitem__(self, index):
        sample = super().__getitem__(index)
        if self.how == "float_mask":
            return sample._replace(mask=sample.mask.astype(np.float32))
        if self.how == "unknown_value":
            mask = sample.mask.copy()
            mask[0, 0] = 7
            return sample._replace(mask=mask)
        if self.how == "random":
            return sample._replace(image=np.random.default_rng().integers(0, 256, sample.image.shape, np.uint8))
        if self.how == "grey_image":
            return sample._replace(image=sample.image[..., 0])
        return sample


def _broken_factory(how: str):
    def factory(split="train", *, root=None, **options):
        data = type(f"Broken_{how}", (_Broken,), {"how": how})(split, n=4, size=32)
        if how == "accepts_any_split" or split in ("train", "test"):
            return data
        raise DataError(f"unknown split {split!r}")
    return factory


@pytest.mark.parametrize(("how", "match"), [
    ("float_mask", "mask must be int64"),
    ("unknown_value", r"mask values \[7\]"),
    ("random", "not deterministic"),
    ("grey_image", "image must be uint8 H×W×3"),
    ("accepts_any_split", "unknown split was accepted"),
])
def test_check_dataset_catches_a_broken_dataset(how, match):
    with registered("dataset", f"broken_{how}", _broken_factory(how)), pytest.raises(AssertionError, match=match):
        check_dataset(f"broken_{how}")

