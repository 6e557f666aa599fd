"""How training is configured: the one home of every training default, importable without torch.

``TrainConfig`` (the budget and how to spend it), ``LossConfig`` (loss weights) and ``PROMPT_MODES`` are read
by the engine (``engine.train``, ``engine.losses``, ``engine.batches`` re-export them), by the bench (a
cell's budget defaults to these values) and by the command line (its help says these defaults). They live
outside ``adaptsam.engine`` because ``adaptsam train --help`` and ``adaptsam bench`` build their options
without importing torch or the engine.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any

from adaptsam.errors import ConfigError

#: How a promptable model is prompted during training and evaluation: the object's box, a point in it, or both.
PROMPT_MODES = ("box", "point", "box+point")


def check_prompt_mode(mode: str) -> str:
    if not isinstance(mode, str) or mode not in PROMPT_MODES:
        raise ConfigError(f"Expected prompt mode in {PROMPT_MODES}, got {mode!r}.")
    return mode


def check_int(name: str, value: Any, minimum: int, *, hint: str = "") -> int:
    """An integer option (bools and floats refused; numpy integers taken) of at least ``minimum``, or a
    ConfigError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"Expected {name} to be an integer >= {minimum}{' (' + hint + ')' if hint else ''}, "
                          f"got {value!r}.")
    return int(value)


def check_number(name: str, value: Any, *, minimum: float = 0.0, strict: bool = True, hint: str = "") -> float:
    """A finite real option above (``strict``) or at least ``minimum``, or a ConfigError naming it."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) \
        and math.isfinite(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ConfigError(f"Expected {name} to be a finite number {bound}{' (' + hint + ')' if hint else ''}, "
                          f"got {value!r}.")
    return float(value)


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms (SAM: focal 20, dice 1, IoU 1)."""

    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    bce: float = 0.0

    def __post_init__(self) -> None:
        if min(self.focal, self.dice, self.iou, self.bce) < 0 or not (self.focal or self.dice or self.bce):
            raise ValueError(f"Loss weights must be >= 0 with at least one mask term > 0, got {self}.")


@dataclass(frozen=True)
class TrainConfig:
    """A fixed training budget and how to spend it.

    Every value is validated here (a :class:`ConfigError` naming the option otherwise). Learning rates and
    other real numbers given as text that is a number (YAML reads ``lr: 1e-4`` as the string "1e-4") are
    taken as that number.
    """

    steps: int = 200
    batch_size: int = 4
    lr: float = 1e-4  # pretrained parameters that train (decoder, full fine-tuning)
    adapter_lr: float = 1e-3  # parameters an adapter added (LoRA, prompts)
    weight_decay: float = 0.01
    warmup: float = 0.05  # fraction of steps
    grad_clip: float = 1.0
    grad_accum: int = 1
    seed: int = 0
    prompt: str = "box"
    loss: LossConfig = field(default_factory=LossConfig)
    cache: bool | None = None  # None: cache embeddings when the encoder is frozen
    augment: bool | None = None  # None: augment images unless embeddings are cached
    cache_dir: str | None = None
    grad_checkpointing: bool = False
    bf16: bool | None = None  # None: on when training on a GPU
    num_workers: int = 0  # DataLoader worker processes preparing batches (0: in the training process)
    pin_memory: bool | None = None  # None: pinned batches when training on a GPU with workers
    progress: bool = True
    log_every: int = 10
    wandb: bool = False
    wandb_project: str = "adaptsam"

    def __post_init__(self) -> None:
        for name in ("lr", "adapter_lr", "weight_decay", "warmup", "grad_clip"):
            value = getattr(self, name)
            if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as text: take text that is a number
                with contextlib.suppress(ValueError):  # not a number: check_number names it below
                    object.__setattr__(self, name, float(value))
        check_int("steps", self.steps, 0, hint="optimiser steps; 0 evaluates the untrained adapter")
        for name in ("batch_size", "grad_accum", "log_every"):
            check_int(name, getattr(self, name), 1)
        check_int("num_workers", self.num_workers, 0, hint="DataLoader worker processes; 0 loads in this process")
        check_int("seed", self.seed, 0)
        for name in ("lr", "adapter_lr"):
            check_number(name, getattr(self, name), hint="a learning rate such as 1e-4")
        check_number("weight_decay", self.weight_decay, strict=False)
        check_number("grad_clip", self.grad_clip, strict=False, hint="0 turns clipping off")
        if check_number("warmup", self.warmup, strict=False) >= 1:
            raise ConfigError(f"Expected warmup (a fraction of steps) in [0, 1), got {self.warmup!r}.")
        for name in ("grad_checkpointing", "progress", "wandb"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"Expected {name} to be true or false, got {getattr(self, name)!r}.")
        for name in ("cache", "augment", "bf16", "pin_memory"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise ConfigError(f"Expected {name} to be true, false or left out (automatic), got "
                                  f"{getattr(self, name)!r}.")
        if self.cache_dir is not None and not isinstance(self.cache_dir, (str, os.PathLike)):
            raise ConfigError(f"Expected cache_dir to be a folder path, got {self.cache_dir!r}.")
        if not isinstance(self.loss, LossConfig):
            raise ConfigError(f"Expected loss to be a LossConfig (a mapping in YAML), got {self.loss!r}.")
        check_prompt_mode(self.prompt)
