"""NCut diagnostics: CKA's known values, the joint cut's bookkeeping, and the command's files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import adaptsam
from adaptsam.cli import main
from adaptsam.diagnostics.cka import grid_cka, linear_cka, resize_grid
from adaptsam.diagnostics.ncut import (
    EMBEDDING,
    Column,
    NcutConfig,
    build_model,
    eigvec_colours,
    joint_ncut,
    select_blocks,
)
from adaptsam.errors import IncompatibleError

pytest.importorskip("ncut_pytorch")


def smooth_tokens(batch: int, side: int, channels: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, channels, 4, 4, generator=generator)
    grid = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)
    return grid.permute(0, 2, 3, 1)


def test_cka_is_one_for_identical_features_and_invariant_to_rotation_and_scale():
    x = torch.randn(500, 32)
    q, _ = torch.linalg.qr(torch.randn(32, 32))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q + 1.0) == pytest.approx(1.0)


def test_cka_drops_when_tokens_are_shuffled():
    x = smooth_tokens(2, 16, 24).reshape(-1, 24)
    shuffled = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(1))]
    assert linear_cka(x, shuffled) < 0.3
    with pytest.raises(ValueError, match="same n"):
        linear_cka(x, x[:10])


def test_grid_cka_compares_token_grids_of_different_sizes():
    fine = smooth_tokens(3, 32, 16)
    coarse = resize_grid(fine, 8)
    assert coarse.shape == (3, 8, 8, 16)
    assert grid_cka(fine, coarse) == pytest.approx(1.0)
    assert grid_cka(fine, smooth_tokens(3, 8, 16, seed=7)) < 0.8


@pytest.mark.parametrize("max_fit", [8192, 40])  # all tokens cut exactly / 40 cut, the rest propagated
def test_joint_ncut_is_deterministic_splits_eigenvectors_back_and_colours_are_rgb(max_fit):
    parts = [torch.randn(2, 6, 6, 8), torch.randn(2, 3, 3, 8) + 4]
    eig = joint_ncut(parts, n_eig=6, seed=0, max_fit=max_fit)
    assert [e.shape for e in eig] == [(72, 6), (18, 6)]
    again = joint_ncut(parts, n_eig=6, seed=0, max_fit=max_fit)
    assert all(torch.equal(a, b) for a, b in zip(eig, again))
    # the two clusters (offset by 4) get different embeddings
    assert (eig[0].mean(0) - eig[1].mean(0)).norm() > 0.5 * eig[0].std(0).norm()
    rgb = eigvec_colours(torch.cat(eig))
    assert rgb.shape == (90, 3) and rgb.min() >= 0 and rgb.max() <= 1


def test_default_blocks_are_the_last_of_each_stage():
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64)
    assert [label for label, _ in select_blocks(model, None)] == ["stage1.block1", "stage2.block1", "stage3.block1"]
    assert [label for label, _ in select_blocks(model, (-1,))] == ["stage3.block1"]
    with pytest.raises(IncompatibleError, match="has 3 encoder blocks"):
        select_blocks(model, (5,))
    vit = adaptsam.create_model("vit_test", policy="native", resolution=64)
    assert len(select_blocks(vit, None)) == min(4, len(vit.prompt_stages()[0].blocks))


def test_adapter_weights_load_at_other_resolutions_but_not_on_another_backbone(tmp_path):
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="lora")
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    path = adaptsam.save_adapter(model, tmp_path / "tiny.safetensors")
    other = build_model(None, Column("upsample", 32), weights=path)
    assert (other.resolution, other.policy.name, other.adapter.name) == (32, "upsample", "lora")
    a = dict(other.named_parameters())
    assert all(torch.equal(a[k], v) for k, v in model.named_parameters() if "lora_" in k)
    with pytest.raises(IncompatibleError, match=r"tiny\.safetensors was made for backbone 'lite_medsam_test'"):
        build_model("vit_test", Column("native", 64), weights=path)


def test_ncut_command_on_a_tiny_backbone_writes_grid_tables_and_numbers(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(
            folder / f"{i}.png")
    out = tmp_path / "out"
    code = main(["ncut", "--backbone", "lite_medsam_test", "--images", str(folder), "--max-images", "2",
                 "--resolutions", "32,64", "--policies", "native,upsample", "--n-eig", "5", "--max-grid", "8",
                 "--out", str(out), "-q"])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"ncut_grid.png", "cka.csv", "cka.md", "summary.json"}
    assert "Linear CKA" in capsys.readouterr().out
    numbers = json.loads((out / "summary.json").read_text())
    assert numbers["columns"] == ["native R=32", "native R=64", "upsample R=32", "upsample R=64"]
    assert numbers["reference"] == "native R=64"
    blocks = list(numbers["cka"])
    assert blocks == ["stage1.block1", "stage2.block1", "stage3.block1", EMBEDDING]
    for block in blocks:
        assert numbers["cka"][block]["native R=64"] == pytest.approx(1.0)
        assert all(0 <= v <= 1 + 1e-6 for v in numbers["cka"][block].values())
    assert Image.open(out / "ncut_grid.png").size[0] > 300
    rows = list(csv.DictReader((out / "cka.csv").open()))
    assert len(rows) == 4 * 4
    assert "| block | native R=32 |" in (out / "cka.md").read_text()


def test_settings_skip_upsample_at_the_design_size():
    columns = NcutConfig(resolutions=(64, 128), policies=("native", "upsample")).columns(design_size=128)
    assert [c.label for c in columns] == ["native R=64", "native R=128", "upsample R=64"]


def test_missing_ncut_pytorch_gives_an_install_hint(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ncut_pytorch", None)
    with pytest.raises(IncompatibleError, match=r"pip install 'adaptsam\[ncut\]'"):
        joint_ncut([torch.randn(10, 4)], n_eig=3, seed=0)
