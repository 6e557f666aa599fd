"""benchmarks/gpu_speed.py (issue 16's device table) runs end to end: here on the CPU, on the tiny ViT, with
torch.compile's eager backend standing in for inductor (minutes of C++ compilation otherwise)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_speed.py"


def test_gpu_speed_prints_one_row_per_policy_with_three_variants(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("gpu_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    eager = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: eager(model, backend="eager"))
    monkeypatch.setattr(sys, "argv", ["gpu_speed.py", "--device", "cpu", "--backbone", "vit_test", "--native-r", "64",
                                      "--batch", "1", "--rounds", "1"])
    assert module.main() == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| upsample")
            or line.startswith("| native")]
    assert len(rows) == 2
    for row in rows:
        speeds = [float(cell) for cell in row.strip("| ").split(" | ")[2:]]
        assert len(speeds) == 3 and all(s > 0 for s in speeds)
