"""Encoder forward per backbone × policy × R, as deployed (BatchNorm folded, channels-last)."""

from __future__ import annotations

import pytest
from conftest import record_rate

from adaptsam.bench.flops import encoder_flops
from adaptsam.bench.perf import deployed_model, encode_fn

BATCH = 4
CASES = [
    ("lite_medsam", "native", 64, False),
    ("lite_medsam", "native", 128, False),
    ("lite_medsam", "upsample", 128, False),
    ("vit_t", "native", 256, False),
    ("vit_b", "native", 256, True),
    ("vit_b", "native", 256, False),
]


@pytest.mark.benchmark(group="encoder")
@pytest.mark.parametrize("backbone, policy, resolution, match_window", CASES,
                         ids=[f"{b}-{p}{r}{'-matched' if m else ''}" for b, p, r, m in CASES])
def test_encoder(benchmark, peak, backbone, policy, resolution, match_window):
    model = deployed_model(backbone, policy, resolution, match_window)
    benchmark.pedantic(encode_fn(model, BATCH), rounds=3, warmup_rounds=1)
    record_rate(benchmark, encoder_flops(model).useful, BATCH, peak)


@pytest.mark.benchmark(group="encoder-1024")
def test_vit_b_upsample_to_1024(benchmark, peak):
    """~15 s a pass on 2 cores: one timed round."""
    model = deployed_model("vit_b", "upsample", 256)
    benchmark.pedantic(encode_fn(model, 1), rounds=1, warmup_rounds=0)
    record_rate(benchmark, encoder_flops(model).useful, 1, peak)
