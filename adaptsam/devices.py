"""Which device a model runs on and at which precision: one place that reads ``--device`` and ``--precision``.

Every command that builds a model takes ``--device auto|cpu|cuda|cuda:N`` (``auto``: CUDA when available);
the engine then creates every tensor on the model's device. bf16 autocast is the default on CUDA (fp32 master
weights); on CPU it stays off, because few CPUs run bf16 natively and it has not been measured faster there.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import torch

from adaptsam.errors import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
PRECISIONS = ("auto", "fp32", "bf16")
_DEVICE = re.compile(r"^(auto|cpu|cuda)(:\d+)?$")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto``/``None`` → ``cuda`` when available else ``cpu``; ``cuda[:N]`` is checked to exist.

    A device that cannot be used is bad user input (a :class:`ConfigError`, one line from the CLI), raised
    before anything is built rather than as a CUDA error half-way through a run.
    """
    if isinstance(device, torch.device):
        text = str(device)
    elif device is None:
        text = "auto"
    elif isinstance(device, str):
        text = device.strip().lower()
    else:
        raise ConfigError(f"Expected a device name ({DEVICE_CHOICES}), got {device!r}.")
    match = _DEVICE.match(text)
    if not match or (match.group(1) != "cuda" and match.group(2)):
        raise ConfigError(f"Unknown device {device!r}; expected {DEVICE_CHOICES} (e.g. --device cuda:0).")
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"Device {text!r} requested but torch.cuda.is_available() is False (torch "
                          f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'}); use --device cpu or "
                          f"auto, or install a CUDA build of torch on a machine with a GPU.")
    index = int(match.group(2)[1:]) if match.group(2) else None
    count = torch.cuda.device_count()
    if index is not None and index >= count:
        raise ConfigError(f"Device {text!r} requested but only {count} CUDA device(s) exist (cuda:0 to "
                          f"cuda:{count - 1}).")
    return torch.device("cuda", index) if index is not None else torch.device("cuda")


def resolve_precision(precision: str | bool | None, device: torch.device | str) -> str:
    """``'bf16'`` or ``'fp32'``: ``auto``/``None`` is bf16 on CUDA and fp32 elsewhere; a bool means bf16 or not."""
    if isinstance(precision, bool):
        return "bf16" if precision else "fp32"
    if precision is None or precision == "auto":
        return "bf16" if torch.device(device).type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(f"Unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}.")
    return precision


@contextlib.contextmanager
def autocast(device: torch.device | str, precision: str) -> Iterator[None]:
    """bf16 autocast on ``device`` when ``precision == 'bf16'``; a no-op for fp32 (weights stay fp32)."""
    device = torch.device(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield


def check_device_option(value: Any) -> str:
    """Validate a stored device option (configs, bench specs) without resolving ``auto``; returns it."""
    match = _DEVICE.match(value.strip().lower()) if isinstance(value, str) else None
    if not match or (match.group(1) != "cuda" and match.group(2)):
        raise ConfigError(f"Unknown device {value!r}; expected {DEVICE_CHOICES} (e.g. --device cuda:0).")
    return value
