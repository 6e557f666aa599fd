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

from adaptsam.engine.batches import run_batch
from adaptsam.engine.cache import EmbeddingCache
from adaptsam.engine.distributed import DistContext, average_gradients
from adaptsam.engine.losses import segmentation_loss
from adaptsam.errors import ConfigError, DataError
from adaptsam.model import SamModel
from adaptsam.train_config import TrainConfig, check_int, check_number

__all__ = ["TrainConfig", "TrainResult", "check_int", "check_number", "fit", "lr_factor", "parameter_groups"]


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
    data, cache, frozen_encoder = _embedding_source(model, data, config)
    logger = _WandbLogger(config, model) if config.wandb and context.is_main else None

    with torch.random.fork_rng(devices=[]), gradient_checkpointing(model, config.grad_checkpointing):
        torch.manual_seed(config.seed)
        steps = _Steps(model, data, config, context, groups, cache, frozen_encoder, result)
        model.train()
        bar = _progress(config.steps, config.progress and context.is_main)
        start = time.perf_counter()
        try:
            for step in range(config.steps):
                loss, parts = steps.run()
                _record(result, step, loss, parts, steps.learning_rate, config, logger, bar)
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


def _embedding_source(model: SamModel, data: Any, config: TrainConfig
                      ) -> tuple[Any, EmbeddingCache | None, bool]:
    """The training data, the embedding cache when the encoder is frozen (and ``config.cache`` allows), and
    whether the encoder is frozen.

    Cached embeddings can only be reused if their images never change, so caching turns image augmentation
    off by default and refuses it when asked for both.
    """
    frozen_encoder = model.adapter is None or model.adapter.encoder_frozen(model)
    cached = frozen_encoder if config.cache is None else config.cache
    if cached and not frozen_encoder:
        raise ConfigError("cache=True needs a frozen image encoder; this adapter trains it.")
    augment = (not cached) if config.augment is None else config.augment
    if cached and augment:
        raise ConfigError("Cached embeddings can't follow image augmentation; set augment=False or cache=False.")
    if not augment and getattr(data, "augment", False):
        data = data.without_augmentation()
    return data, (EmbeddingCache(model, directory=config.cache_dir) if cached else None), frozen_encoder


class _Steps:
    """Optimiser steps, one per :meth:`run`: draw batches (``grad_accum`` of them), get their embeddings (cache,
    no-grad frozen encoder, or none: the encoder trains), decode under autocast, back-propagate, average
    gradients across ranks, clip, step the optimiser and the schedule."""

    def __init__(self, model: SamModel, data: Any, config: TrainConfig, context: DistContext,
                 groups: list[dict[str, Any]], cache: EmbeddingCache | None, frozen_encoder: bool,
                 result: TrainResult):
        self.model, self.data, self.config, self.context, self.cache, self.result = \
            model, data, config, context, cache, result
        self.frozen_encoder = frozen_encoder
        self.use_bf16 = model.device.type == "cuda" if config.bf16 is None else config.bf16
        self.params = [p for g in groups for p in g["params"]]
        self.optimiser = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimiser, functools.partial(lr_factor, total=config.steps, warmup_fraction=config.warmup))
        self.stream = batch_stream(data, config, context, pin_memory=config.pin_memory if config.pin_memory
                                   is not None else model.device.type == "cuda")

    @property
    def learning_rate(self) -> float:
        return self.schedule.get_last_lr()[-1]

    def run(self) -> tuple[float, dict[str, float]]:
        """One optimiser step: its mean loss over the accumulated batches, and the last batch's loss terms."""
        config = self.config
        self.optimiser.zero_grad(set_to_none=True)
        losses = []
        for _ in range(config.grad_accum):
            batch = _next_batch(self.model, self.data, self.stream, self.result)
            embeddings = self._embeddings(batch)
            with torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
                masks = run_batch(self.model, batch, prompt=config.prompt, embeddings=embeddings)
            loss, parts = segmentation_loss(masks.logits, masks.iou, masks.targets, masks.valid, config.loss)
            (loss / config.grad_accum).backward()
            losses.append(float(loss.detach()))
            self.result.images_seen += config.batch_size  # across ranks: each holds its shard of the draw
        average_gradients(self.params, self.context)
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, config.grad_clip)
        self.optimiser.step()
        self.schedule.step()
        return float(np.mean(losses)), parts

    def _embeddings(self, batch: dict[str, Any]) -> torch.Tensor | None:
        if self.cache is not None:
            return self.cache.embeddings(batch["image"], batch["id"], batch.get("valid_hw"))
        if self.frozen_encoder:  # no graph through an encoder nothing in which trains
            with torch.no_grad():
                return self.model.encode(batch["image"].to(self.model.device), batch.get("valid_hw"))
        return None  # the encoder trains: run_batch encodes with gradients


def _record(result: TrainResult, step: int, loss: float, parts: dict[str, float], lr: float,
            config: TrainConfig, logger: _WandbLogger | None, bar: Any) -> None:
    """Step ``step`` done: its loss in ``result`` (a non-finite loss stops training), the history every
    ``log_every`` steps and at the end, wandb and the progress bar."""
    result.steps = step + 1
    result.final_loss = loss
    if not np.isfinite(loss):
        raise FloatingPointError(f"Training diverged at step {step + 1}: loss {loss}.")
    if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
        record = {"step": step + 1, "loss": loss, "lr": lr, **parts}
        result.history.append(record)
        if logger:
            logger.log(record)
    if bar:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")


def batch_stream(data: Any, config: TrainConfig, context: DistContext, *, pin_memory: bool = False
                 ) -> Iterator[dict[str, Any]]:
    """Collated training batches, forever: each a seeded draw of ``config.batch_size`` images (this rank's
    shard), prepared in this process or, with ``config.num_workers``, by DataLoader workers.

    Every sample is a function of (seed, epoch, index) (``LowResDataset``), and each worker is told the
    epoch with the index (:class:`_EpochItems`), so workers give the very batches this process would.
    """
    draws = ([(epoch, p) for p in context.shard(positions)]
             for epoch, positions in batches(len(data), config.batch_size, config.seed))
    if config.num_workers == 0:
        items = _EpochItems(data)
        return (default_collate([items[item] for item in draw]) for draw in draws)
    loader = torch.utils.data.DataLoader(_EpochItems(data), batch_sampler=draws, num_workers=config.num_workers,
                                         collate_fn=default_collate, pin_memory=pin_memory)
    return iter(loader)


class _EpochItems(torch.utils.data.Dataset):
    """``items[(epoch, position)]``: sample ``position`` as epoch ``epoch`` augments it."""

    def __init__(self, data: Any):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        epoch, position = item
        self.data.set_epoch(epoch)
        return self.data[position]


def _next_batch(model: SamModel, data: Any, stream: Iterator[dict[str, Any]], result: TrainResult
                ) -> dict[str, Any]:
    """The next batch that has something to prompt.

    A prompted model gets one prompt per object, so a batch whose images hold no object (empty masks, or an
    augmentation crop that cut the object out) has nothing to decode: it is skipped and counted in
    ``result.skipped_batches``. When a whole epoch's worth of draws in a row is empty, no image is usable.
    """
    limit = max(1, len(data)) + 1
    for _ in range(limit):
        batch = next(stream)
        if not model.uses_prompts or bool((batch["classes"] >= 0).any()):
            return batch
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
