"""The training loop: AdamW, warm-up + cosine schedule, gradient clipping and accumulation, seeded.

``fit(model, data, TrainConfig(...))`` trains whatever the model's adapter left trainable, on a
``LowResDataset``, for a fixed budget of optimiser steps (the bench compares adapters at equal budgets).
When the encoder is frozen its embeddings come from :class:`~adaptsam.engine.cache.EmbeddingCache`
(image augmentation is then off by default, since an embedding can only be reused if its image doesn't
change). bf16 autocast runs on GPU only; gradient checkpointing of encoder blocks is optional.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from adaptsam.engine.batches import check_prompt_mode, run_batch
from adaptsam.engine.cache import EmbeddingCache
from adaptsam.engine.distributed import DistContext, average_gradients
from adaptsam.engine.losses import LossConfig, segmentation_loss
from adaptsam.errors import ConfigError, DataError
from adaptsam.model import SamModel


def check_int(name: str, value: Any, minimum: int, *, hint: str = "") -> int:
    """An integer option (bools and floats refused) of at least ``minimum``, or a ConfigError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"Expected {name} to be an integer >= {minimum}{' (' + hint + ')' if hint else ''}, "
                          f"got {value!r}.")
    return int(value)


def check_number(name: str, value: Any, *, minimum: float = 0.0, strict: bool = True, hint: str = "") -> float:
    """A finite real option above (``strict``) or at least ``minimum``, or a ConfigError naming it."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating)) \
        and math.isfinite(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ConfigError(f"Expected {name} to be a finite number {bound}{' (' + hint + ')' if hint else ''}, "
                          f"got {value!r}.")
    return float(value)


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
        for name in ("cache", "augment", "bf16"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise ConfigError(f"Expected {name} to be true, false or left out (automatic), got "
                                  f"{getattr(self, name)!r}.")
        if self.cache_dir is not None and not isinstance(self.cache_dir, (str, os.PathLike)):
            raise ConfigError(f"Expected cache_dir to be a folder path, got {self.cache_dir!r}.")
        if not isinstance(self.loss, LossConfig):
            raise ConfigError(f"Expected loss to be a LossConfig (a mapping in YAML), got {self.loss!r}.")
        check_prompt_mode(self.prompt)


@dataclass
class TrainResult:
    steps: int = 0
    seconds: float = 0.0
    images_seen: int = 0
    final_loss: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    cached: bool = False
    cache_misses: int = 0
    cache_hits: int = 0
    skipped_batches: int = 0  # batches without any object to prompt (see _next_batch)
    skipped_images: int = 0  # training images without any object, left out before training (experiment)

    @property
    def images_per_second(self) -> float:
        return self.images_seen / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "seconds": self.seconds, "images_seen": self.images_seen,
                "images_per_second": self.images_per_second, "final_loss": self.final_loss,
                "cached": self.cached, "cache_misses": self.cache_misses, "cache_hits": self.cache_hits,
                "skipped_batches": self.skipped_batches,
                "skipped_images": self.skipped_images, "history": self.history}


def parameter_groups(model: SamModel, config: TrainConfig) -> list[dict[str, Any]]:
    """Adapter-added parameters (modules marked ``adapter_owned``) get ``adapter_lr``, the rest ``lr``."""
    owned: set[int] = set()
    for module in model.modules():
        if getattr(module, "adapter_owned", False):
            owned.update(id(p) for p in module.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) in owned], "lr": config.adapter_lr},
              {"params": [p for p in trainable if id(p) not in owned], "lr": config.lr}]
    return [g for g in groups if g["params"]]


def lr_factor(step: int, total: int, warmup_fraction: float) -> float:
    """Linear warm-up, then cosine decay to zero."""
    warmup = max(1, round(warmup_fraction * total)) if warmup_fraction > 0 else 0
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def batches(n: int, batch_size: int, seed: int) -> Iterator[tuple[int, list[int]]]:
    """(epoch, positions) forever: a fresh seeded permutation per epoch, the same on every rank."""
    epoch = 0
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(n).tolist()
        while len(order) < batch_size:  # tiny (k-shot) sets: fill the batch from more permutations
            order += np.random.default_rng([seed, epoch, len(order)]).permutation(n).tolist()
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield epoch, order[start:start + batch_size]
        epoch += 1


@contextlib.contextmanager
def gradient_checkpointing(model: SamModel, enabled: bool) -> Iterator[None]:
    """Recompute encoder blocks in backward instead of storing their activations (less memory, ~30% slower)."""
    blocks = [b for stage in model.prompt_stages() for b in stage.blocks] if enabled else []
    for block in blocks:
        block.forward = functools.partial(_checkpointed, block.forward)
    try:
        yield
    finally:
        for block in blocks:
            del block.forward


def _checkpointed(forward: Any, *args: Any) -> Any:
    if not torch.is_grad_enabled():
        return forward(*args)
    return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False)


def fit(model: SamModel, data: Any, config: TrainConfig | None = None, *,
        out_dir: str | os.PathLike[str] | None = None, context: DistContext | None = None) -> TrainResult:
    """Train ``model``'s adapter on ``data`` (a LowResDataset) for ``config.steps`` optimiser steps."""
    config = config or TrainConfig()
    context = context or DistContext()
    if model.adapter is not None:
        model.adapter.setup(model, data)
    groups = parameter_groups(model, config)
    result = TrainResult()
    if not groups or config.steps == 0:
        model.eval()
        if out_dir is not None and context.is_main and model.adapter is not None:
            _save(model, out_dir)
        return result
    frozen_encoder = model.adapter is None or model.adapter.encoder_frozen(model)
    cached = frozen_encoder if config.cache is None else config.cache
    if cached and not frozen_encoder:
        raise ValueError("cache=True needs a frozen image encoder; this adapter trains it.")
    augment = (not cached) if config.augment is None else config.augment
    if cached and augment:
        raise ValueError("Cached embeddings can't follow image augmentation; set augment=False or cache=False.")
    if not augment and getattr(data, "augment", False):
        data = data.without_augmentation()
    cache = EmbeddingCache(model, directory=config.cache_dir) \
        if cached else None
    use_bf16 = model.device.type == "cuda" if config.bf16 is None else config.bf16
    params = [p for g in groups for p in g["params"]]
    logger = _WandbLogger(config, model) if config.wandb and context.is_main else None

    with torch.random.fork_rng(devices=[]), gradient_checkpointing(model, config.grad_checkpointing):
        torch.manual_seed(config.seed)
        optimiser = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, functools.partial(lr_factor, total=config.steps, warmup_fraction=config.warmup))
        model.train()
        draw = batches(len(data), config.batch_size, config.seed)
        bar = _progress(config.steps, config.progress and context.is_main)
        start = time.perf_counter()
        try:
            for step in range(config.steps):
                optimiser.zero_grad(set_to_none=True)
                losses = []
                for _ in range(config.grad_accum):
                    batch, positions = _next_batch(model, data, draw, context, result)
                    if cache is not None:
                        embeddings = cache.embeddings(batch["image"], batch["id"], batch.get("valid_hw"))
                    elif frozen_encoder:  # no graph through an encoder nothing in which trains
                        with torch.no_grad():
                            embeddings = model.encode(batch["image"].to(model.device), batch.get("valid_hw"))
                    else:
                        embeddings = None
                    with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                        masks = run_batch(model, batch, prompt=config.prompt, embeddings=embeddings)
                    loss, parts = segmentation_loss(masks.logits, masks.iou, masks.targets, masks.valid, config.loss)
                    (loss / config.grad_accum).backward()
                    losses.append(float(loss.detach()))
                    result.images_seen += len(positions)
                average_gradients(params, context)
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimiser.step()
                schedule.step()
                result.steps = step + 1
                result.final_loss = float(np.mean(losses))
                if not np.isfinite(result.final_loss):
                    raise FloatingPointError(f"Training diverged at step {step + 1}: loss {result.final_loss}.")
                if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
                    record = {"step": step + 1, "loss": result.final_loss, "lr": schedule.get_last_lr()[-1], **parts}
                    result.history.append(record)
                    if logger:
                        logger.log(record)
                if bar:
                    bar.update(1)
                    bar.set_postfix(loss=f"{result.final_loss:.4f}")
        except KeyboardInterrupt:
            if out_dir is not None and context.is_main:
                _save(model, out_dir)
            raise
        finally:
            result.seconds = time.perf_counter() - start
            if bar:
                bar.close()
            if logger:
                logger.finish()
    model.eval()
    if cache is not None:
        result.cached, result.cache_misses, result.cache_hits = True, cache.misses, cache.hits
    if out_dir is not None and context.is_main:
        _save(model, out_dir)
    return result


def _next_batch(model: SamModel, data: Any, draw: Iterator[tuple[int, list[int]]], context: DistContext,
                result: TrainResult) -> tuple[dict[str, Any], list[int]]:
    """The next batch that has something to prompt.

    A prompted model gets one prompt per object, so a batch whose images hold no object (empty masks, or an
    augmentation crop that cut the object out) has nothing to decode: it is skipped and counted in
    ``result.skipped_batches``. When a whole epoch's worth of draws in a row is empty, no image is usable.
    """
    limit = max(1, len(data)) + 1
    for _ in range(limit):
        epoch, positions = next(draw)
        data.set_epoch(epoch)
        batch = default_collate([data[p] for p in context.shard(positions)])
        if not model.uses_prompts or bool((batch["classes"] >= 0).any()):
            return batch, positions
        result.skipped_batches += 1
    base = getattr(data, "base", data)
    raise DataError(f"No training image of {getattr(base, 'name', 'the dataset')}/{getattr(base, 'split', '?')} at "
                    f"R={getattr(data, 'resolution', '?')} holds an object to prompt ({limit} batches in a row were "
                    f"empty): check that the masks are not all background, or use a prompt-free adapter.")


def _save(model: SamModel, out_dir: str | os.PathLike[str]) -> Path:
    from adaptsam.adapters.io import save_adapter

    return save_adapter(model, Path(out_dir) / "adapter.safetensors")


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="train", unit="step", leave=False, dynamic_ncols=True)


class _WandbLogger:
    """Optional Weights & Biases logging; offline unless the user configured an online run."""

    def __init__(self, config: TrainConfig, model: SamModel):
        import wandb

        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        self.run = wandb.init(project=config.wandb_project, mode=mode, reinit=True, config={
            "backbone": model.info.name, "adapter": model.adapter.to_dict() if model.adapter else None,
            "resolution": model.resolution, "steps": config.steps, "batch_size": config.batch_size})

    def log(self, record: dict[str, float]) -> None:
        self.run.log(record, step=int(record["step"]))

    def finish(self) -> None:
        self.run.finish()
