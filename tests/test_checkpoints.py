"""Checkpoint resolution and loading: explicit > $ADAPTSAM_HOME > packaged > opt-in download; clear errors."""

from __future__ import annotations

import hashlib

import pytest
import torch

import adaptsam
from adaptsam.assets import CheckpointSpec, resolve_checkpoint
from adaptsam.errors import CheckpointError


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTSAM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_missing_official_weights_say_what_to_put_where(home):
    with pytest.raises(CheckpointError) as info:
        adaptsam.create_model("vit_b")
    message = str(info.value)
    assert "sam_vit_b_01ec64.pth" in message
    assert str(home / "checkpoints" / "sam_vit_b_01ec64.pth") in message
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in message
    assert "--download" in message


def test_non_existent_path_is_named():
    with pytest.raises(CheckpointError, match=r"'/no/such/file.pth' does not exist"):
        adaptsam.create_model("vit_test", checkpoint="/no/such/file.pth")


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path):
    bogus = tmp_path / "notes.pth"
    bogus.write_text("these are not weights")
    with pytest.raises(CheckpointError, match="notes.pth.*not a readable PyTorch weights file"):
        adaptsam.create_model("vit_test", checkpoint=bogus)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    state = adaptsam.create_model("vit_test").state_dict()
    state.pop("mask_decoder.iou_token.weight")
    state["image_encoder.extra.weight"] = torch.zeros(1)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        adaptsam.create_model("vit_test", checkpoint=path)
    message = str(info.value)
    assert "edited.pth" in message
    assert "1 missing keys: mask_decoder.iou_token.weight" in message
    assert "1 unexpected keys: image_encoder.extra.weight" in message


def test_checkpoint_of_another_backbone_lists_shape_mismatches(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save({"model": adaptsam.create_model("lite_medsam_test").state_dict()}, path)  # wrapped, like upstream
    with pytest.raises(CheckpointError, match="tiny.pth.*other shapes.*another backbone"):
        adaptsam.create_model("lite_medsam", checkpoint=path)


def test_resolution_order_and_cache_dir(home, tmp_path):
    packaged = tmp_path / "packaged.pth"
    packaged.write_bytes(b"x")
    spec = CheckpointSpec("w.pth", packaged=lambda: str(packaged))
    assert resolve_checkpoint(spec) == packaged
    cached = home / "checkpoints" / "w.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"y")
    assert resolve_checkpoint(spec) == cached
    assert resolve_checkpoint(spec, explicit=packaged) == packaged


def test_download_only_on_request_and_verified(home, tmp_path):
    source = tmp_path / "remote.pth"
    source.write_bytes(b"weights")
    good = hashlib.sha256(b"weights").hexdigest()
    spec = CheckpointSpec("remote.pth", url=source.as_uri(), sha256=good)
    with pytest.raises(CheckpointError, match="not found"):
        resolve_checkpoint(spec)
    assert resolve_checkpoint(spec, download=True).read_bytes() == b"weights"
    bad = CheckpointSpec("other.pth", url=source.as_uri(), sha256="0" * 64)
    with pytest.raises(CheckpointError, match="sha256"):
        resolve_checkpoint(bad, download=True)
    assert not (home / "checkpoints" / "other.pth").exists()
    assert not list((home / "checkpoints").glob("*.part"))
