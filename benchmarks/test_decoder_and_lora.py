"""Prompt encoder + mask decoder forward, and LoRA's inference cost: frozen vs merged vs unmerged."""

from __future__ import annotations

import pytest
import torch

from adaptsam.bench.measure import sample_inputs
from adaptsam.bench.perf import forward_fn, lora_variants, reference_model
from adaptsam.model import Prompts

BATCH = 4


@pytest.mark.benchmark(group="decoder")
@pytest.mark.parametrize("backbone, resolution", [("lite_medsam", 128), ("vit_b", 256)])
def test_decoder_forward(benchmark, backbone, resolution):
    model = reference_model(backbone, "native", resolution, backbone == "vit_b")
    images, boxes = sample_inputs(model, BATCH)
    with torch.inference_mode():
        embeddings = model.encode(images)

    @torch.inference_mode()
    def decode():
        return model.decode(embeddings, Prompts.from_user(BATCH, boxes=boxes))
    benchmark.pedantic(decode, rounds=10, warmup_rounds=2)


@pytest.fixture(scope="module")
def lora_models():
    return lora_variants()


@pytest.mark.benchmark(group="lora-vit_b-native256")
@pytest.mark.parametrize("variant", ["frozen", "merged", "unmerged"])
def test_lora_inference(benchmark, lora_models, variant):
    benchmark.pedantic(forward_fn(lora_models[variant], BATCH), rounds=5, warmup_rounds=1)
