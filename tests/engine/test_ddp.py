"""``torchrun --nproc_per_node 2 -m adaptsam train`` on CPU (gloo): same result as one process; rank 0 writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

ARGS = ["train", "--backbone", "lite_medsam_test", "--random-init", "--adapter", "lora", "--policy", "native",
        "-R", "64", "--data", "synthetic", "--steps", "3", "--limit", "4", "--no-progress"]


@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(
    os.path.join(os.path.dirname(sys.executable), "torchrun")), reason="torchrun not installed")
def test_two_processes_match_one_and_only_rank_zero_writes(tmp_path):
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two, one = tmp_path / "two", tmp_path / "one"
    subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "adaptsam", *ARGS,
                    "--out", str(two)], check=True, env=env, capture_output=True, timeout=240)
    subprocess.run([sys.executable, "-m", "adaptsam", *ARGS, "--out", str(one)], check=True, env=env,
                   capture_output=True, timeout=240)
    assert sorted(p.name for p in two.iterdir()) == ["adapter.safetensors", "metrics.json"]
    metrics = json.loads((two / "metrics.json").read_text())
    assert metrics["written_by"] == {"rank": 0, "world_size": 2}
    assert json.loads((one / "metrics.json").read_text())["written_by"] == {"rank": 0, "world_size": 1}
    a, b = load_file(str(two / "adapter.safetensors")), load_file(str(one / "adapter.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert any(v.abs().max() > 0 for k, v in a.items() if "lora_B" in k)  # it did train
    assert torch.isfinite(torch.tensor(metrics["mean_dice"]))
