"""Measurements of a trained cell: inference throughput, parameters, peak memory, environment.

Throughput follows timm's benchmark: eval mode, ``inference_mode``, warm-up iterations, then timed ones at
a fixed batch; the median gives images/s and the spread gives p50/p95 batch latency. The model is timed as
it would be deployed: an inference copy (:func:`adaptsam.inference.for_inference`: adapter merged,
BatchNorm folded, channels-last convolutions). Peak memory is CUDA's max-allocated on GPU; on CPU a
sampling thread reads the process's resident set (``/proc/self/statm``) and reports the peak above the
level at the start of the cell.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptsam.inference import for_inference
from adaptsam.model import SamModel


@dataclass(frozen=True)
class Throughput:
    images_per_s: float
    latency_p50_ms: float
    latency_p95_ms: float
    batch: int
    iterations: int
    threads: int
    merged: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sample_inputs(model: SamModel, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images at the model's R and one centred box each: what speed is timed on (content doesn't
    change it)."""
    r = model.resolution
    images = torch.rand(batch, 3, r, r, generator=torch.Generator().manual_seed(seed))
    boxes = torch.tensor([[r * 0.25, r * 0.25, r * 0.75, r * 0.75]]).repeat(batch, 1)
    return images.to(model.device), boxes.to(model.device)


def measure_throughput(model: SamModel, batch: int = 4, *, warmup: int = 1, iterations: int = 10,
                       min_iterations: int = 3, budget_s: float = 8.0, seed: int = 0) -> Throughput:
    """Images per second of the full forward (encoder + prompt encoder + decoder) at the model's R.

    After ``warmup`` untimed passes, timed passes run until ``min_iterations`` are done and ``budget_s``
    seconds are spent, or ``iterations`` are done: fast models get many samples, slow ones (upsampling to
    1024) don't spend minutes being timed.
    """
    images, boxes = sample_inputs(model, batch, seed)
    merged = bool(model.adapter is not None and model.adapter.supports_merge)
    fast = for_inference(model)
    times = []
    with torch.inference_mode():
        for i in range(warmup + iterations):
            _sync(model.device)
            start = time.perf_counter()
            fast(images, boxes=boxes) if fast.uses_prompts else fast(images)
            _sync(model.device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
                if len(times) >= min_iterations and sum(times) >= budget_s:
                    break
    del fast
    seconds = np.asarray(times)
    return Throughput(images_per_s=float(batch / np.median(seconds)),
                      latency_p50_ms=float(np.percentile(seconds, 50) * 1000),
                      latency_p95_ms=float(np.percentile(seconds, 95) * 1000), batch=batch, iterations=len(times),
                      threads=torch.get_num_threads(), merged=merged)


def _rss_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.megabytes``: the peak above the starting level."""

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.005):
        self.device = torch.device(device)
        self.interval = interval
        self.megabytes = 0.0
        self._stop = threading.Event()
        self._peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._start = self._peak = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, _rss_bytes())
        self.megabytes = max(0, peak - self._start) / 2**20


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """Versions, hardware and threads, recorded with every cell (only ratios within one run compare)."""
    from adaptsam import __version__

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu
    return {"adaptsam": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cpu": cpu, "device": device, "cuda": torch.cuda.is_available(),
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "git_sha": _git_sha()}


def _git_sha() -> str | None:
    source = Path(__file__).resolve().parents[2]
    if not (source / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
