"""A new prompt-free adapter, in one plugin file this test writes, through the command line: train, eval, predict
and export need no change outside that file (issue 15's acceptance, end to end; the Python-API version is in
tests/test_prompt_free_head.py).

The plugin declares its head only through the ``Adapter.head(model)`` hook and takes its classes from the
training data in ``setup``; every command below finds it through its entry point, like an installed plugin.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from adaptsam.cli import main
from adaptsam.testing import make_distribution

PLUGIN = '''
"""Prompt-free: a two-layer convolutional head on the frozen image embeddings, one logit map per class."""
from dataclasses import dataclass, replace

from torch import nn

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field
from adaptsam.adapters.head import PromptFreeHead
from adaptsam.model import SamOutput


class ConvHead(PromptFreeHead):
    def __init__(self, classes, dim, hidden):
        super().__init__(classes, threshold=0.5)
        self.body = nn.Sequential(nn.Conv2d(dim, hidden, 3, padding=1), nn.GELU(), nn.Conv2d(hidden, len(classes), 1))

    def forward(self, model, embeddings):
        low = self.body(embeddings)
        return SamOutput(logits=model.policy.logits_to_output(low, model), iou=low.amax((-2, -1)).sigmoid(),
                         low_res_logits=low)


@dataclass(frozen=True)
class ConvHeadConfig(AdapterConfig):
    classes: tuple = help_field((1,), "class indices; set from the training data")
    hidden: int = help_field(16, "hidden channels")


class ConvHeadAdapter(Adapter):
    """Prompt-free convolutional head on frozen SAM embeddings (a test plugin)."""

    name = "fake_conv_head"
    config_class = ConvHeadConfig
    uses_prompts = False

    def inject(self, model):
        c = self.config
        model.fake_conv_head = ConvHead(tuple(c.classes), model.prompt_encoder.embed_dim, c.hidden).to(model.device)

    def head(self, model):
        return getattr(model, "fake_conv_head", None)

    def setup(self, model, train_data):
        classes = tuple(train_data.foreground_classes)
        if classes != tuple(self.config.classes):
            self.config = replace(self.config, classes=classes)
            self.inject(model)
'''


@pytest.fixture
def plugin(plugin_path):
    make_distribution(plugin_path, "fake-adaptsam-plugin-convhead", {"adaptsam.adapters": {
        "fake_conv_head": "fake_adaptsam_plugin_convhead:ConvHeadAdapter"}},
        {"fake_adaptsam_plugin_convhead.py": PLUGIN})
    return "fake_conv_head"


def test_prompt_free_plugin_through_every_command(plugin, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--backbone", "vit_test", "--adapter", plugin, "--policy", "native", "-R", "64",
                 "--data", "synthetic_2class", "--shots", "4", "--steps", "3", "--batch-size", "2", "--limit", "3",
                 "--no-progress", "--device", "cpu", "--out", str(run)]) == 0, capsys.readouterr().err
    metrics = json.loads((run / "metrics.json").read_text())
    weights = run / "adapter.safetensors"
    assert weights.is_file()
    text = json.dumps(metrics)
    assert '"steps": 3' in text, text[:500]  # it trained
    assert "disc" in text and "square" in text, text[:500]  # scored per class of the plugin's head

    assert main(["eval", "--weights", str(weights), "--data", "synthetic_2class", "--limit", "3", "--no-progress",
                 "--out", str(tmp_path / "eval")]) == 0, capsys.readouterr().err
    assert (tmp_path / "eval" / "metrics.json").is_file()

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"wide": (40, 70), "tall": (80, 50)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / f"{name}.png")
    out = tmp_path / "preds"
    assert main(["predict", str(weights), str(images), "--out", str(out), "-q"]) == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"]["adapter"] == plugin and summary["model"]["prompt_free"] and not summary["failed"]
    for item in summary["images"]:
        assert [m["class"] for m in item["masks"]] == [1, 2]  # one mask per class the head learned in setup
        labels = np.asarray(Image.open(out / item["label_map"]))
        assert labels.shape == tuple(item["size"][::-1]) and set(np.unique(labels).tolist()) <= {0, 1, 2}

    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "head.onnx"
    capsys.readouterr()
    assert main(["export", str(weights), "--onnx", str(onnx)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert onnx.is_file() and float(printed.split("max abs diff ")[1].split()[0]) < 1e-3
