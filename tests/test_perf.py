"""The performance machinery: table logic, paired timing, the deployment copy (fast, equal, inference-only)."""

import pytest
import torch

import adaptsam
from adaptsam.bench.perf import Target, TargetResult, format_table, interleaved_times, paired_ratio
from adaptsam.cli import main
from adaptsam.inference import fold_batchnorm, for_inference


def test_targets_pass_and_fail_in_both_directions_and_the_table_ends_with_the_count():
    results = [TargetResult(Target("speed-up", 10), 12.0), TargetResult(Target("overhead", 1.03, at_least=False), 1.1),
               TargetResult(Target("share", 2, at_least=False, unit="%"), 0.3), TargetResult(Target("x", 1), None)]
    assert [r.passed for r in results] == [True, False, True, False]
    table = format_table(results)
    assert table.splitlines()[-1] == "targets met: 2/4"
    assert "| FAIL" in table and "n/a" in table and "≤ 1.03×" in table


def test_paired_ratio_is_the_median_of_same_round_ratios():
    times = {"a": [2.0, 4.0, 3.0], "b": [1.0, 1.0, 2.0]}
    assert paired_ratio(times, "a", "b") == pytest.approx(2.0)
    calls = []
    out = interleaved_times({"x": lambda: calls.append("x"), "y": lambda: calls.append("y")}, rounds=2, warmup=0)
    assert calls == ["x", "y", "y", "x"]  # the order rotates between rounds
    assert {k: len(v) for k, v in out.items()} == {"x": 2, "y": 2}


def test_inference_copy_equals_the_model_and_leaves_it_alone():
    model = adaptsam.create_model("lite_medsam", policy="native", resolution=64, adapter="lora").eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.01)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[8.0, 8.0, 50.0, 50.0]] * 2)
    fast = for_inference(model)
    with torch.inference_mode():
        expected, got = model(images, boxes=boxes).logits, fast(images, boxes=boxes).logits
    assert (expected - got).abs().max() < 1e-3
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original keeps its layers
    assert fold_batchnorm(fast) == 0
    with pytest.raises(RuntimeError, match="inference copy"):
        fast.train()


def test_perf_command_is_registered(capsys):
    with pytest.raises(SystemExit):
        main(["perf", "--help"])
    assert "targets met" in capsys.readouterr().out
