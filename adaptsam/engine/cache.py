"""Image embeddings of a frozen encoder, computed once per image and reused across epochs, cells and splits.

When an adapter leaves the image encoder frozen (``frozen``, ``decoder``, class prompts without encoder
LoRA), every training step and every evaluation would recompute the same embedding; a decoder step is tens
of times cheaper than an encoder pass. Misses are encoded by the model itself (not its faster deployed copy,
whose folded BatchNorm differs in the last float bits), so cached and uncached training stay bit-identical.
An embedding is keyed by **what determines it**: the bytes of the image tensor the encoder sees (a content
hash, so two folders that share a name never share embeddings, and one image reached through two datasets or
splits is encoded once) with its framing, and the model side — backbone, its checkpoint sha256 (or
random-init seed), policy with its options, R. Held in memory, and optionally on disk (atomic writes, one
file per embedding) under a folder shared by every cell of a bench.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch.utils._python_dispatch import _disable_current_modes

from adaptsam.model import SamModel


def model_identity(model: SamModel) -> str:
    """A short hash of everything on the model side that changes a frozen encoder's output."""
    info = model.info
    weights = info.checkpoint_sha256 or f"init-seed-{getattr(model, 'init_seed', 0)}"
    identity = {"backbone": info.name, "weights": weights, "pretrained": info.pretrained,
                "resolution": model.resolution, "policy": model.policy.to_dict() if model.policy else None}
    return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def content_hash(image: torch.Tensor) -> str:
    """sha1 of one image tensor's dtype, shape and bytes (what the encoder is fed)."""
    tensor = image.detach().to("cpu").contiguous()
    digest = hashlib.sha1(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return digest.hexdigest()[:24]


class EmbeddingCache:
    """``cache.embeddings(images, ids)`` → B×C×h×w, computing only the images not seen before.

    ``ids`` are kept for the interface (callers pass their batch ids) but do not key anything: the image
    content does. ``hits`` / ``misses`` count images served from memory or disk vs encoded.
    """

    def __init__(self, model: SamModel, *, directory: str | os.PathLike[str] | None = None):
        self.model = model
        self.prefix = model_identity(model)
        self.directory = Path(directory) if directory is not None else None
        self._memory: dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0

    def _key(self, image: torch.Tensor, valid_hw: torch.Tensor | None) -> str:
        framing = "" if valid_hw is None else "-" + "x".join(str(int(v)) for v in valid_hw.tolist())
        return f"{self.prefix}-{content_hash(image)}{framing}"

    def _from_disk(self, key: str) -> torch.Tensor | None:
        if self.directory is None:
            return None
        path = self.directory / f"{key}.pt"
        if not path.is_file():
            return None
        try:
            return torch.load(path, weights_only=True)
        except (OSError, RuntimeError, EOFError):  # a file another process is still renaming, or truncated
            return None

    def _to_disk(self, key: str, embedding: torch.Tensor) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{key}.{os.getpid()}.tmp"
        torch.save(embedding.clone(), tmp)
        tmp.replace(self.directory / f"{key}.pt")

    def embeddings(self, images: torch.Tensor, ids: list[str] | None = None,
                   valid_hw: torch.Tensor | None = None) -> torch.Tensor:
        keys = [self._key(image, None if valid_hw is None else valid_hw[i]) for i, image in enumerate(images)]
        todo = []
        for position, key in enumerate(keys):
            if key not in self._memory:
                stored = self._from_disk(key)
                if stored is None:
                    todo.append(position)
                else:
                    self._memory[key] = stored
        if todo:
            # outside any dispatch mode: a bench's memory count must not charge one cell for an embedding
            # the whole bench shares (adaptsam.bench.live_tensors)
            with torch.no_grad(), _disable_current_modes():
                fresh = self.model.encode(images[todo].to(self.model.device),
                                          None if valid_hw is None else valid_hw[todo]).detach()
            for position, embedding in zip(todo, fresh):
                self._memory[keys[position]] = embedding.to("cpu")
                self._to_disk(keys[position], embedding.to("cpu"))
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        device = self.model.device
        return torch.stack([self._memory[key] for key in keys]).to(device)

    @property
    def size(self) -> int:
        """Embeddings held in memory."""
        return len(self._memory)
