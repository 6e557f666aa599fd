"""Image embeddings of a frozen encoder, computed once per image and reused across epochs.

When an adapter leaves the image encoder frozen (``frozen``, ``decoder``, class prompts without encoder
LoRA), every training step would recompute the same embedding; a decoder step is tens of times cheaper
than an encoder pass. Embeddings are keyed by image (dataset, split, id) and by everything that changes
them (backbone, its checkpoint sha256 or init seed, policy, R), held in memory, and optionally also
written to disk (atomically) under a folder such as the training output folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from adaptsam.model import SamModel


class EmbeddingCache:
    """``cache.embeddings(batch)`` → B×C×h×w, computing only the images not seen before."""

    def __init__(self, model: SamModel, *, dataset_name: str, split: str,
                 directory: str | os.PathLike[str] | None = None):
        info = model.info
        weights = info.checkpoint_sha256 or f"init-seed-{getattr(model, 'init_seed', 0)}"
        identity = {"backbone": info.name, "weights": weights, "resolution": model.resolution,
                    "policy": model.policy.to_dict() if model.policy else None, "dataset": dataset_name,
                    "split": split}
        self.model = model
        self.prefix = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = Path(directory) if directory is not None else None
        self._memory: dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0

    def _key(self, image_id: str) -> str:
        return f"{self.prefix}-{hashlib.sha1(image_id.encode()).hexdigest()[:16]}"

    def _from_disk(self, key: str) -> torch.Tensor | None:
        if self.directory is None:
            return None
        path = self.directory / f"{key}.pt"
        return torch.load(path, weights_only=True) if path.is_file() else None

    def _to_disk(self, key: str, embedding: torch.Tensor) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{key}.{os.getpid()}.tmp"
        torch.save(embedding, tmp)
        tmp.replace(self.directory / f"{key}.pt")

    def embeddings(self, images: torch.Tensor, ids: list[str]) -> torch.Tensor:
        keys = [self._key(i) for i in ids]
        todo = []
        for position, key in enumerate(keys):
            if key not in self._memory:
                stored = self._from_disk(key)
                if stored is None:
                    todo.append(position)
                else:
                    self._memory[key] = stored
        if todo:
            with torch.no_grad():
                fresh = self.model.encode(images[todo].to(self.model.device)).detach()
            for position, embedding in zip(todo, fresh):
                self._memory[keys[position]] = embedding
                self._to_disk(keys[position], embedding.cpu())
        self.misses += len(todo)
        self.hits += len(keys) - len(todo)
        device = self.model.device
        return torch.stack([self._memory[key].to(device) for key in keys])

    @property
    def size(self) -> int:
        """Embeddings held in memory."""
        return len(self._memory)
