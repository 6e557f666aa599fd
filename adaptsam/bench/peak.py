"""Same-run sgemm peak: what this machine's BLAS reaches on the matrix shapes the encoders multiply.

"Percent of peak" only means something against a peak measured in the same run, on the same threads and
the same (shared, throttling) cores: a datasheet number or one from another session is off by ±25% here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

# (rows, inner, cols) of ViT-B's qkv, proj and MLP linears over a batch of 4 images at 16×16 tokens
VIT_B_SHAPES: tuple[tuple[int, int, int], ...] = (
    (1024, 768, 2304), (1024, 768, 768), (1024, 768, 3072), (1024, 3072, 768))


@dataclass(frozen=True)
class Peak:
    gflops: float
    shape: tuple[int, int, int]
    threads: int

    def percent(self, achieved_gflops: float) -> float:
        return 100.0 * achieved_gflops / self.gflops


def sgemm_gflops(rows: int, inner: int, cols: int, *, repeats: int = 10, warmup: int = 5) -> float:
    """Best-of-``repeats`` float32 GFLOP/s of one ``rows×inner @ inner×cols`` product on the CPU."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(rows, inner, generator=generator)
    b = torch.randn(inner, cols, generator=generator)
    out = torch.empty(rows, cols)
    best = float("inf")
    for i in range(warmup + repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        if i >= warmup:
            best = min(best, time.perf_counter() - start)
    return 2.0 * rows * inner * cols / best / 1e9


def sgemm_peak(shapes: tuple[tuple[int, int, int], ...] = VIT_B_SHAPES, *, repeats: int = 10) -> Peak:
    """The best sgemm rate over ``shapes`` with the current thread setting."""
    with torch.inference_mode():
        rates = {shape: sgemm_gflops(*shape, repeats=repeats) for shape in shapes}
    shape = max(rates, key=rates.get)
    return Peak(gflops=rates[shape], shape=shape, threads=torch.get_num_threads())
