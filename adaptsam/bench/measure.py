"""Measurements of a trained cell that are not speed: peak memory per phase, and the environment.

Speed lives in :mod:`adaptsam.bench.timing` (one timing phase per bench). Peak memory is measured per phase,
above the level at the phase's start, so the model's own weights are not counted and the figure is the
phase's working memory (activations, gradients, optimiser state):

- **CUDA**: the caching allocator's ``max_memory_allocated`` (reset at the phase's start).
- **CPU**: the peak bytes of live tensors allocated in the phase, counted op by op
  (:class:`~adaptsam.bench.live_tensors.LiveTensorPeak`): the same graph gives the same bytes on every run,
  whichever cells ran before it. The resident set's high-water mark (``VmHWM``, reset through
  ``/proc/self/clear_refs``) was tried first and kept as ``method="rss"``: even in a fresh worker process
  per cell and with ``malloc_trim`` at each phase start, one graph's inference figure varied 73–113 MB
  between seeds, because glibc's arenas keep what training left in them.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import platform
import subprocess
import threading
from pathlib import Path
from typing import Any

import torch

from adaptsam.bench.live_tensors import LiveTensorPeak
from adaptsam.model import SamModel


def sample_inputs(model: SamModel, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images at the model's R and one centred box each: what speed is timed on (content doesn't
    change it)."""
    r = model.resolution
    images = torch.rand(batch, 3, r, r, generator=torch.Generator().manual_seed(seed))
    boxes = torch.tensor([[r * 0.25, r * 0.25, r * 0.75, r * 0.75]]).repeat(batch, 1)
    return images.to(model.device), boxes.to(model.device)


def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _rss_bytes() -> int:
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.megabytes``: the phase's peak above its start, on the
    device the model lives on; ``peak.method`` says how it was read.

    ``method``: ``"tensors"`` (CPU default: live tensor bytes, exact and repeatable) or ``"rss"`` (the
    process's resident-set high-water mark: what the OS sees, noisier). ``optimiser_steps`` limits the CPU
    tensor count to a training phase's first steps (see :mod:`adaptsam.bench.live_tensors`). On CUDA both
    are ignored: the allocator's own peak is exact and free.
    """

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.005, *, method: str = "tensors",
                 optimiser_steps: int | None = None):
        if method not in ("tensors", "rss"):
            raise ValueError(f"Expected method 'tensors' or 'rss', got {method!r}.")
        self.device = torch.device(device)
        self.interval = interval
        self.kind = method
        self.optimiser_steps = optimiser_steps
        self.megabytes = 0.0
        self.method = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: LiveTensorPeak | None = None
        self._peak = 0

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            self.method = "CUDA max_memory_allocated above the phase's start"
            return self
        if self.kind == "tensors":
            self._start = 0
            self._live = LiveTensorPeak(self.device, optimiser_steps=self.optimiser_steps).__enter__()
            steps = f", training over its first {self.optimiser_steps} optimiser steps" \
                if self.optimiser_steps else ""
            self.method = ("peak bytes of live tensors allocated in the phase, counted op by op (CPU: exact and "
                           f"repeatable; allocator overhead and kernel scratch space not included{steps})")
            return self
        libc = _libc()
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
        self._start = self._peak = _rss_bytes()
        if _reset_high_water_mark() and _status_kb("VmHWM") is not None:
            self.method = "peak resident set (VmHWM) above the phase's start, one worker process per cell"
        else:
            self.method = "resident set sampled every 5 ms, above the phase's start"
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self._live is not None:
            self._live.__exit__(*exc)
            peak = self._live.peak_bytes
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, _rss_bytes())
        else:
            peak = (_status_kb("VmHWM") or 0) * 1024
        self.megabytes = max(0, peak - self._start) / 2**20


def inference_memory(deployed: SamModel, batch: int) -> float:
    """Peak working memory (MB) of one forward pass of a deployed copy
    (:func:`adaptsam.inference.for_inference`) at ``batch``; its weights exist before the phase starts, so
    they are not counted."""
    images, boxes = sample_inputs(deployed, batch)
    with PeakMemory(deployed.device) as peak, torch.inference_mode():
        deployed(images, boxes=boxes) if deployed.uses_prompts else deployed(images)
    return peak.megabytes


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
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "git_sha": _git_sha(),
            **gpu_environment()}


def gpu_environment() -> dict[str, Any]:
    """GPU name, memory, CUDA runtime and driver versions, bf16 support; nothing when CUDA is not available.

    Read through ``torch.cuda`` (no extra dependency); the driver version comes from ``nvidia-smi`` when it is
    on the PATH (``None`` otherwise). Nothing here touches the allocator, so a CPU run never initialises CUDA.
    """
    if not torch.cuda.is_available():
        return {}
    props = torch.cuda.get_device_properties(0)
    driver = None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True)
        driver = out.stdout.strip().splitlines()[0] if out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"gpu": props.name, "gpu_memory_gb": round(props.total_memory / 1024 ** 3, 1),
            "gpu_count": torch.cuda.device_count(), "cuda_version": torch.version.cuda, "gpu_driver": driver,
            "gpu_capability": f"{props.major}.{props.minor}", "bf16_supported": torch.cuda.is_bf16_supported()}


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
