"""Adapters save and merge safely (issue 14): merged saves, all-or-nothing merges, the recorded trainable
set, and non-finite files refused."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file, save_file

import adaptsam
from adaptsam.adapters.io import read_metadata
from adaptsam.adapters.lora import lora_layers
from adaptsam.errors import CheckpointError, IncompatibleError
from adaptsam.testing import random_batch


def trained_lora(targets=("qv", "decoder"), train_decoder=True, adapter="lora"):
    """A tiny LoRA model whose updates and decoder weights have moved, as after training."""
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter=adapter,
                                  adapter_cfg={"rank": 2, "targets": list(targets), "train_decoder": train_decoder})
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def outputs(model) -> torch.Tensor:
    images, boxes = random_batch(model)
    with torch.no_grad():
        return model(images, boxes=boxes).logits


def test_merged_save_of_decoder_lora_with_train_decoder_loads_to_the_same_model(tmp_path):
    model = trained_lora()
    expected = outputs(model)
    adaptsam.merge_adapter(model)
    assert (outputs(model) - expected).abs().max() < 1e-4  # merging itself is exact
    path = adaptsam.save_adapter(model, tmp_path / "merged.safetensors")
    loaded = adaptsam.load_adapter(path).eval()
    assert (outputs(loaded) - expected).abs().max() < 1e-4  # not W + 2ΔW on the decoder linears
    adaptsam.merge_adapter(loaded)
    assert (outputs(loaded) - expected).abs().max() < 1e-4
    adaptsam.unmerge_adapter(model)  # saving left the model merged; the unmerged model saves the same file
    unmerged_file = adaptsam.save_adapter(model, tmp_path / "unmerged.safetensors")
    a, b = load_file(str(path)), load_file(str(unmerged_file))
    assert set(a) == set(b) and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_a_failing_merge_changes_no_weight_and_no_flag():
    model = trained_lora(targets=("qv",), train_decoder=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    last, delta = lora_layers(model)[-1]
    with torch.no_grad():
        delta.lora_B["v"][0, 0] = float("inf")  # q of this layer merges fine, v cannot
    with pytest.raises(IncompatibleError, match=r"non-finite.*'v'.*no layer was changed"):
        adaptsam.merge_adapter(model)
    after = model.state_dict()
    changed = [k for k in before if "lora_B" not in k and not torch.equal(before[k], after[k])]
    assert changed == []
    assert not any(d.merged for _, d in lora_layers(model))


def test_a_merge_that_fails_while_writing_is_rolled_back(monkeypatch):
    model = trained_lora(targets=("qv",), train_decoder=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layers = lora_layers(model)
    calls = {"n": 0}
    real_add = torch.Tensor.add_

    def failing_add(self, *args, **kwargs):
        if any(self is linear.weight for linear, _ in layers):
            calls["n"] += 1
            if calls["n"] == len(layers):  # every layer but the last already written
                raise RuntimeError("simulated failure while writing")
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "add_", failing_add)
    with pytest.raises(RuntimeError, match="simulated"):
        adaptsam.merge_adapter(model)
    monkeypatch.undo()
    assert calls["n"] == len(layers) > 1
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(d.merged for _, d in lora_layers(model))


def test_freezing_the_model_before_saving_still_saves_the_adapter(tmp_path):
    model = trained_lora()
    declared = set(model.adapter.trainable_state_dict(model))
    model.requires_grad_(False)
    path = adaptsam.save_adapter(model, tmp_path / "frozen.safetensors")
    saved = load_file(str(path))
    assert declared and set(saved) == declared
    assert any(".lora." in k for k in saved) and any(k.startswith("mask_decoder.") for k in saved)
    assert (outputs(adaptsam.load_adapter(path).eval()) - outputs(model)).abs().max() < 1e-5


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_an_adapter_file_with_non_finite_tensors_is_refused_naming_the_tensor(tmp_path, bad):
    path = adaptsam.save_adapter(trained_lora(), tmp_path / "ok.safetensors")
    tensors = load_file(str(path))
    name = sorted(k for k in tensors if "lora_B" in k)[0]
    tensors[name][0, 0] = bad
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, str(broken), metadata=read_metadata(path))
    with pytest.raises(CheckpointError, match="non-finite.*" + re.escape(name)):
        adaptsam.load_adapter(broken)
