"""ONNX export: onnxruntime reproduces the torch model (adapter merged), K is dynamic, the file is deterministic."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import adaptsam
from adaptsam.cli import main
from adaptsam.errors import IncompatibleError
from adaptsam.export import ExportConfig, ExportError, example_inputs, export_onnx, verify_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def with_random_lora(model):
    """Non-zero LoRA updates, so merging changes the weights and the comparison means something."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.02)
    return model


def test_real_lite_medsam_lora_at_128_exports_and_matches_torch(tmp_path):
    """The acceptance check: LiteMedSAM + LoRA at R=128, merged, against the unmerged torch model, for
    K = 1 and K = 3 boxes (traced with K = 2, so this also shows K is dynamic)."""
    model = with_random_lora(adaptsam.create_model("lite_medsam", policy="native", resolution=128, adapter="lora"))
    report = export_onnx(model, tmp_path / "lora128.onnx")
    assert report.merged
    assert report.max_abs_diff_logits < 1e-3 and report.max_abs_diff_iou < 1e-3
    proto = onnx.load(str(report.path))
    shapes = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert shapes == {"image": [1, 3, 128, 128], "boxes": [1, "K", 4]}
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["adaptsam.backbone"] == "lite_medsam" and meta["adaptsam.resolution"] == "128"
    assert meta["adaptsam.adapter_merged"] == "true"


def test_export_cli_is_deterministic_prints_the_diff_and_leaves_the_model_unmerged(tmp_path, capsys):
    model = with_random_lora(adaptsam.create_model("lite_medsam_test", policy="native", resolution=64,
                                                   adapter="lora"))
    weights = adaptsam.save_adapter(model, tmp_path / "tiny.safetensors")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert main(["export", str(weights), "--onnx", str(tmp_path / "a.onnx")]) == 0
    printed = capsys.readouterr().out
    assert "(adapter merged)" in printed
    assert float(printed.split("max abs diff ")[1].split()[0]) < 1e-4
    export_onnx(model, tmp_path / "b.onnx", ExportConfig(verify=False))
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ExportError, match=r"a\.onnx does not reproduce the torch model.*expected <= 1e-12"):
        verify_onnx(tmp_path / "a.onnx", model, ExportConfig(tolerance=1e-12), box_counts=(1,))


def test_class_prompt_models_export_logits_and_labels(tmp_path):
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="class_prompt_lora",
                                  adapter_cfg={"classes": (1, 2)})
    with torch.no_grad():
        model.class_prompts.embeddings.normal_()
    report = export_onnx(model, tmp_path / "classes.onnx", ExportConfig(verify=False))
    assert report.inputs == {"image": [1, 3, 64, 64]}
    assert report.outputs == {"logits": [1, 2, 64, 64], "iou": [1, 2], "labels": [1, 64, 64]}
    session = ort.InferenceSession(str(tmp_path / "classes.onnx"), providers=["CPUExecutionProvider"])
    image = example_inputs(model, 1, 0, seed=5)["image"]
    logits, labels = session.run(["logits", "labels"], {"image": image.numpy()})
    with torch.no_grad():
        expected = model(image).logits
    assert np.abs(logits - expected.numpy()).max() < 1e-4
    assert np.array_equal(labels, model.class_prompts.labels(expected).numpy())


def test_missing_onnx_gives_an_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64)
    with pytest.raises(IncompatibleError, match=r"pip install 'adaptsam\[export\]'"):
        export_onnx(model, tmp_path / "x.onnx")


@pytest.mark.parametrize("options", [{"opset": 9}, {"batch_size": 0}, {"tolerance": 0}])
def test_bad_export_options_are_refused(options):
    with pytest.raises(ValueError, match="Expected"):
        ExportConfig(**options)


def test_a_model_that_cannot_be_traced_fails_with_an_export_error_naming_it(tmp_path):
    model = adaptsam.create_model("lite_medsam_test", policy="native", resolution=64, adapter="sam_adapter")
    with pytest.raises(ExportError, match=r"Could not trace lite_medsam_test \(sam_adapter\) into ONNX"):
        export_onnx(model, tmp_path / "sa.onnx")
