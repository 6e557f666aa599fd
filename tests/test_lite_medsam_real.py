"""LiteMedSAM with its real weights: it segments, at R=128 under both policies, and its bias cache is fresh."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import adaptsam
from adaptsam.data import LowResDataset, open_dataset
from adaptsam.testing import stale_attention_caches


def _dice(logits: torch.Tensor, target: torch.Tensor) -> float:
    pred = logits > 0
    target = target.bool()
    return float(2 * (pred & target).sum() / (pred.sum() + target.sum()).clamp_min(1))


def test_real_weights_segment_a_bright_disc_from_a_box():
    model = adaptsam.create_model("lite_medsam", policy="native", resolution=256)
    yy, xx = torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij")
    disc = ((yy - 120) ** 2 + (xx - 140) ** 2 < 50 ** 2)
    image = torch.full((1, 3, 256, 256), 0.1)
    image[:, :, disc] = 0.9
    with torch.no_grad():
        out = model(image, boxes=torch.tensor([[85., 65., 195., 175.]]))
    assert _dice(out.logits[0, 0], disc) > 0.8


def test_loading_weights_into_an_eval_model_refreshes_tinyvit_bias_cache():
    """The upstream pitfall: weights loaded after .eval() leave the cached attention biases stale."""
    model = adaptsam.create_model("lite_medsam_test").eval()
    state = model.state_dict()
    for key in state:
        if key.endswith("attention_biases"):
            state[key] = torch.randn_like(state[key])
    torch.nn.Module.load_state_dict(model, state)  # what upstream code does ...
    assert stale_attention_caches(model)  # ... leaves stale caches, and this check sees it
    model.load_state_dict(state)  # SamModel's own load refreshes them
    assert not stale_attention_caches(model)


def test_real_model_is_built_with_fresh_bias_caches():
    model = adaptsam.create_model("lite_medsam", policy="native", resolution=128)
    assert not model.training and not stale_attention_caches(model)


@pytest.mark.parametrize("policy", ["upsample", "native"])
def test_kvasir_first_10_test_images_at_128(data_root, policy):
    base = open_dataset("kvasir_seg", "test", root=data_root / "kvasir_seg")
    data = LowResDataset(base, 128, indices=range(10))
    model = adaptsam.create_model("lite_medsam", policy=policy, resolution=128)
    dices = []
    with torch.no_grad():
        for item in data:
            out = model(item["image"][None], boxes=item["boxes"][:1][None])
            target = item["mask"] == 1
            dices.append(_dice(out.logits[0, 0], target))
    assert np.mean(dices) > 0.92, (policy, np.mean(dices))
