"""The declared prompt-free head: a new prompt-free method is one file, with no edit anywhere else.

The plugin below lives only in a file this test writes (with its entry point, like an installed
distribution); it trains, evaluates, predicts and exports through the same code paths as the built-ins.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import adaptsam
from adaptsam import registry
from adaptsam.data import LowResDataset, open_dataset
from adaptsam.engine.evaluate import evaluate
from adaptsam.engine.train import TrainConfig, fit
from adaptsam.testing import make_distribution

PLUGIN = '''
"""A prompt-free adapter in one file: a 1×1 convolution from the frozen image embeddings to one logit per class."""
from dataclasses import dataclass

from torch import nn

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field
from adaptsam.adapters.head import PromptFreeHead
from adaptsam.model import SamOutput


class LinearHead(PromptFreeHead):
    def __init__(self, classes, dim):
        super().__init__(classes, threshold=0.5)
        self.proj = nn.Conv2d(dim, len(classes), kernel_size=1)

    def forward(self, model, embeddings):
        low = self.proj(embeddings)
        return SamOutput(logits=model.policy.logits_to_output(low, model), iou=low.mean((-2, -1)).sigmoid())


@dataclass(frozen=True)
class LinearHeadConfig(AdapterConfig):
    classes: tuple = help_field((1, 2), "class indices, one output channel each")


class LinearHeadAdapter(Adapter):
    """Prompt-free linear probe on frozen SAM embeddings."""

    name = "fake_linear_head"
    config_class = LinearHeadConfig
    uses_prompts = False

    def inject(self, model):
        model.fake_linear_head = LinearHead(self.config.classes, model.prompt_encoder.embed_dim).to(model.device)
        model.fake_linear_head.requires_grad_(True)

    def head(self, model):
        return getattr(model, "fake_linear_head", None)
'''

R = 64


@pytest.fixture
def plugin(plugin_path):
    make_distribution(plugin_path, "fake-adaptsam-plugin-head", {"adaptsam.adapters": {
        "fake_linear_head": "fake_adaptsam_plugin_head:LinearHeadAdapter"}},
        {"fake_adaptsam_plugin_head.py": PLUGIN})
    return "fake_linear_head"


def _data(split: str, n: int) -> LowResDataset:
    return LowResDataset(open_dataset("synthetic_2class", split, n=n, size=R), R, train=split == "train")


def test_a_prompt_free_plugin_trains_evaluates_predicts_and_exports(plugin, tmp_path):
    from adaptsam.predict import PredictConfig, Predictor

    model = adaptsam.create_model("vit_test", policy="native", resolution=R, adapter=plugin)
    assert not model.uses_prompts and model.head is model.fake_linear_head
    before = model.fake_linear_head.proj.weight.detach().clone()
    fit(model, _data("train", 8), TrainConfig(steps=3, batch_size=2, lr=1e-2, progress=False), out_dir=tmp_path)
    assert not torch.equal(before, model.fake_linear_head.proj.weight)  # it trained

    test = _data("test", 4)
    result = evaluate(model, test, progress=False)
    assert result.n_images == 4 and set(result.per_class) <= {"disc", "square"} and result.per_class

    reloaded = adaptsam.load_adapter(tmp_path / "adapter.safetensors").eval()
    image = test[0]["image"][None]
    with torch.no_grad():
        assert torch.equal(model.eval()(image).logits, reloaded(image).logits)

    raw = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    (prediction,) = Predictor(reloaded, PredictConfig(progress=False)).predict([raw], [None])
    assert prediction.labels.shape == (50, 70) and prediction.classes == [1, 2]

    pytest.importorskip("onnxruntime")
    from adaptsam.export import export_onnx

    report = export_onnx(reloaded, tmp_path / "head.onnx")
    assert report.outputs == {"logits": [1, 2, R, R], "iou": [1, 2], "labels": [1, R, R]}
    assert report.max_abs_diff_logits < 1e-3


@pytest.mark.parametrize("adapter", registry.adapters.names())
def test_the_model_and_its_adapter_agree_on_prompts(adapter):
    """``SamModel.uses_prompts`` comes from the head alone; the adapter's class-level declaration (which a bench
    reads before any model exists) must agree with it from the moment the adapter is applied."""
    model = adaptsam.create_model("vit_test", pretrained=False, policy="native", resolution=32, adapter=adapter)
    assert model.uses_prompts == model.adapter.uses_prompts
    assert (model.head is None) == model.uses_prompts


def test_class_prompts_are_known_only_to_their_own_adapter():
    root = Path(adaptsam.__file__).parent
    hits = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if re.search(r"class_prompts", p.read_text()))
    assert hits == ["adapters/class_prompt.py"], hits
