"""Decoder-only training step with and without the embedding cache; one bench cell's bookkeeping."""

from __future__ import annotations

import pytest

from adaptsam.bench.perf import decoder_step_fns, time_one_cell


@pytest.fixture(scope="module", params=[("vit_b", 256, True), ("lite_medsam", 128, False)],
                ids=["vit_b-256", "lite_medsam-128"])
def steps(request):
    backbone, resolution, match_window = request.param
    return decoder_step_fns(backbone, resolution, match_window=match_window)


@pytest.mark.benchmark(group="decoder-training-step")
@pytest.mark.parametrize("mode", ["cached", "uncached"])
def test_decoder_training_step(benchmark, steps, mode):
    benchmark.pedantic(steps[mode], rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group="bench-cell")
def test_one_bench_cell_bookkeeping(benchmark):
    """A real cell (LiteMedSAM decoder-only, native 64, 10 steps) through the executor and its store; the
    share of its time that is neither build, train, eval nor measurement goes into extra_info."""
    timings = benchmark.pedantic(time_one_cell, rounds=1, warmup_rounds=0)
    benchmark.extra_info["bookkeeping_ms"] = round(timings["bookkeeping_s"] * 1000, 1)
    benchmark.extra_info["bookkeeping_percent"] = round(100 * timings["bookkeeping_s"] / timings["total_s"], 2)
    assert timings["bookkeeping_s"] < timings["total_s"]
