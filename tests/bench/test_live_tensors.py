"""The CPU memory count: new storages only, freed ones released, the same graph the same bytes every time."""

from __future__ import annotations

import torch

from adaptsam.bench.live_tensors import LiveTensorPeak
from adaptsam.bench.measure import PeakMemory, inference_memory
from adaptsam.inference import for_inference

MB = 2**20


def test_new_storages_count_views_inplace_and_old_tensors_do_not():
    weights = torch.ones(4 * MB // 4)
    with LiveTensorPeak() as live:
        weights.add_(1)  # in place on a tensor from before the phase: nothing new
        view = weights[: MB // 4]  # a view: nothing new
        block = torch.zeros(2 * MB // 4)  # 2 MB, new
        del block
        other = torch.empty(MB // 4)  # 1 MB, new, alive at the end
    assert live.peak_bytes == 2 * MB and live.current_bytes == MB
    del view, other


def test_counting_stops_after_the_given_optimiser_steps():
    param = torch.nn.Parameter(torch.zeros(MB // 4))
    optimiser = torch.optim.SGD([param], lr=0.1)
    with LiveTensorPeak(optimiser_steps=1) as live:
        for size in (1, 8):  # a larger allocation after the first step is not seen
            (param * 2).sum().backward()
            optimiser.step()
            junk = torch.zeros(size * MB // 4)
            del junk
    assert live.steps_seen == 1 and MB <= live.peak_bytes < 8 * MB


def test_one_graph_gives_the_same_bytes_whatever_ran_before():
    from adaptsam.api import create_model

    model = create_model("lite_medsam_test", adapter="lora", policy="native", resolution=64, pretrained=False)
    first = inference_memory(for_inference(model), 2)
    hoard = [torch.rand(MB) for _ in range(16)]  # fragment the heap the way an earlier cell would
    with PeakMemory("cpu") as peak:
        model.train()
        model(torch.rand(2, 3, 64, 64), boxes=torch.tensor([[8.0, 8, 40, 40]] * 2)).logits.sum().backward()
    del hoard
    second = inference_memory(for_inference(model), 2)
    assert first == second > 0 and peak.megabytes > first and "live tensors" in peak.method
