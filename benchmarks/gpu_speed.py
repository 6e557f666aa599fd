"""ViT-B images/s on a GPU: eager fp32 vs bf16 autocast vs bf16 + torch.compile, at 1024 (upsample) and native 256.

    python benchmarks/gpu_speed.py --device cuda            # the table issue 16 asks for (random ViT-B weights)
    python benchmarks/gpu_speed.py --device cpu --backbone vit_test --native-r 64 --batch 1 --rounds 2   # smoke test

Each model is the deployed copy (``adaptsam.inference.for_inference``), the one the bench times. The variants
of one (policy, R) run in interleaved rounds after a warm-up (compilation happens there), CUDA synchronised
around every pass; images/s is the median over rounds. Compare with segment-anything-fast's published A100
figures for ViT-B, batch 8: 12.1 img/s eager fp32 → 92.1 img/s with bf16 + compile + SDPA + custom kernels.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from adaptsam.api import create_model
from adaptsam.bench.measure import sample_inputs
from adaptsam.devices import autocast, resolve_device
from adaptsam.inference import for_inference

VARIANTS = ("fp32", "bf16", "bf16+compile")


def runner(model: Any, batch: int, precision: str) -> Callable[[], None]:
    images, boxes = sample_inputs(model, batch)
    device = images.device

    @torch.inference_mode()
    def run() -> None:
        with autocast(device, precision):
            model(images, boxes=boxes)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return run


def time_variants(backbone: str, policy: str, resolution: int | None, device: torch.device, batch: int,
                  rounds: int) -> dict[str, float]:
    model = for_inference(create_model(backbone, pretrained=False, policy=policy, resolution=resolution,
                                       device=device))
    fns = {"fp32": runner(model, batch, "fp32"), "bf16": runner(model, batch, "bf16"),
           "bf16+compile": runner(torch.compile(model), batch, "bf16")}
    for fn in fns.values():  # warm-up; compiles the compiled variant
        fn()
        fn()
    per_image: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(rounds):
        order = VARIANTS[round_ % 3:] + VARIANTS[:round_ % 3]
        for name in order:
            start = time.perf_counter()
            fns[name]()
            per_image[name].append((time.perf_counter() - start) / batch)
    return {name: 1.0 / statistics.median(values) for name, values in per_image.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone", default="vit_b")
    parser.add_argument("--native-r", type=int, default=256, help="R of the native row (the upsample row runs at "
                                                                    "the design size)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.backbone} (random weights), batch {args.batch}, {name}, torch {torch.__version__}, median of "
          f"{args.rounds} interleaved rounds")
    print("| policy | R | " + " | ".join(f"{v} img/s" for v in VARIANTS) + " |")
    print("|---|---:|" + "---:|" * len(VARIANTS))
    for policy, resolution in (("upsample", None), ("native", args.native_r)):
        speeds = time_variants(args.backbone, policy, resolution, device, args.batch, args.rounds)
        shown = resolution or "design size"
        print(f"| {policy} | {shown} | " + " | ".join(f"{speeds[v]:.1f}" for v in VARIANTS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
