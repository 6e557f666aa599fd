"""A tiny grid shared by the bench tests: 2 adapters × 2 policies × 2 resolutions on a tiny backbone."""

from __future__ import annotations

import pytest

from adaptsam.bench.spec import AdapterChoice, BenchSpec

TINY_FLAGS = ["--backbones", "lite_medsam_test", "--random-init", "--adapters", "frozen,lora", "--policies",
              "native,upsample", "--resolutions", "32,64", "--data", "synthetic", "--shots", "2", "--steps", "2",
              "--eval-limit", "2", "--throughput-batch", "1", "--seeds", "0", "--timing-rounds", "2",
              "--no-progress"]


@pytest.fixture
def tiny_spec() -> BenchSpec:
    return BenchSpec(backbones=("lite_medsam_test",), adapters=(AdapterChoice("frozen"), AdapterChoice("lora")),
                     policies=("native", "upsample"), resolutions=(32, 64), datasets=("synthetic",), shots=(2,),
                     seeds=(0,), steps=2, eval_limit=2, throughput_batch=1, pretrained=False, name="tiny",
                     timing_rounds=2)
