"""``prototype``: training-free few-shot segmentation by nearest class prototype on frozen SAM features.

The floor any few-shot method has to clear. From the k-shot training set, each class's prototype is the
mean of the frozen image encoder's embeddings under that class's pixels (masked average pooling, as in
PANet: the mask is area-pooled to the embedding grid, so a cell half covered by the class weighs one
half). At inference every embedding cell is compared with every prototype by cosine similarity and takes
the nearest; the per-class scores are upsampled to R. Nothing trains and nothing is random: the result
depends on the seed only through which k images are drawn.

Data with a background class (binary sets: every pixel not in a foreground class, ignore excluded) gets a
background prototype too, so background is a competitor rather than a threshold. Each class's logit is
``temperature × (its similarity − the best other similarity, background included)``: positive exactly
where the class is the nearest prototype, so the head's 0.5 sigmoid threshold is the argmax.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field
from adaptsam.adapters.head import PromptFreeHead
from adaptsam.data.types import IGNORE_INDEX
from adaptsam.errors import DataError
from adaptsam.model import SamModel, SamOutput


@dataclass(frozen=True)
class ClassFeatures:
    """Mean frozen embedding (C×D) of each foreground class, of the background (D,) or None, and of every
    valid pixel (D,): the common component to subtract before comparing."""

    classes: tuple[int, ...]
    means: torch.Tensor
    background: torch.Tensor | None
    center: torch.Tensor


@torch.no_grad()
def class_features(model: SamModel, train_data: Any, batch_size: int = 8) -> ClassFeatures:
    """Masked average pooling of ``model``'s image embeddings over ``train_data`` (a LowResDataset, images as
    degraded to R, no augmentation), per foreground class and for the background."""
    classes = tuple(int(c) for c in train_data.foreground_classes)
    grid = model.embedding_grid
    was_training = model.training
    model.eval()
    sums = torch.zeros(len(classes) + 1, model.prompt_encoder.embed_dim, dtype=torch.float64)
    weights = torch.zeros(len(classes) + 1, dtype=torch.float64)
    try:
        for start in range(0, len(train_data), batch_size):
            shots = [train_data.degraded(i) for i in range(start, min(start + batch_size, len(train_data)))]
            images = torch.from_numpy(np.stack([d.image for d in shots])).permute(0, 3, 1, 2)
            embeddings = model.encode(images.to(model.device).float().div_(255)).double().cpu()
            masks = torch.from_numpy(np.stack([d.mask for d in shots]).astype(np.int64))
            onehot = torch.stack([masks == c for c in classes], 1)
            background = ~onehot.any(1, keepdim=True) & (masks != IGNORE_INDEX)[:, None]
            cover = F.interpolate(torch.cat([onehot, background], 1).double(), size=grid, mode="area")
            sums += torch.einsum("bkhw,bdhw->kd", cover, embeddings)
            weights += cover.sum((0, 2, 3))
    finally:
        model.train(was_training)
    missing = [c for c, w in zip(classes, weights[:-1].tolist()) if w == 0]
    if missing:
        raise DataError(f"Expected every class to cover some pixels of the {len(train_data)} training images, but "
                        f"classes {missing} cover none at R={train_data.resolution}. Use more shots or a larger R.")
    center = (sums.sum(0) / weights.sum()).float()
    means = (sums / weights.clamp_min(1e-12)[:, None]).float()
    return ClassFeatures(classes, means[:-1], means[-1] if weights[-1] > 0 else None, center)


def cosine_maps(embeddings: torch.Tensor, references: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """B×D×h×w embeddings, K×D references → B×K×h×w cosine similarities, both centred on ``center`` (D,;
    zeros for plain cosines).

    Centring matters for PerSAM: SAM-family embeddings share a large common component, so raw cosines are
    high everywhere (on synthetic shapes with LiteMedSAM a class's own pixels were *less* similar to its mean
    than the background was, 0.4 vs 0.6-0.8), and the most similar pixel is rarely on the object.
    """
    embeddings = embeddings - center.view(1, -1, 1, 1)
    return torch.einsum("bdhw,kd->bkhw", F.normalize(embeddings, dim=1), F.normalize(references - center, dim=1))


class Prototypes(PromptFreeHead):
    """One stored prototype per class (plus an optional background one); nearest-prototype logits."""

    def __init__(self, classes: tuple[int, ...], dim: int, background: bool, temperature: float):
        super().__init__(classes, threshold=0.5)
        self.register_buffer("prototypes", torch.zeros(len(classes) + int(background), dim))
        self.register_buffer("center", torch.zeros(dim))
        self.has_background = background
        self.temperature = temperature

    def forward(self, model: SamModel, embeddings: torch.Tensor) -> SamOutput:
        similarity = cosine_maps(embeddings.float(), self.prototypes.float(), self.center.float())
        logits = margin_logits(similarity, len(self.class_ids)) * self.temperature
        best = similarity[:, :len(self.class_ids)].flatten(2).amax(-1)
        return SamOutput(logits=model.policy.logits_to_output(logits, model), iou=best, low_res_logits=logits)


def margin_logits(scores: torch.Tensor, classes: int) -> torch.Tensor:
    """B×K×h×w scores (the first ``classes`` are classes, the rest competitors such as background) → B×C×h×w:
    each class's score minus the best other score; positive exactly where the class wins."""
    if scores.shape[1] == 1:
        return scores
    top2 = scores.topk(2, dim=1).values
    best_other = torch.where(scores == top2[:, :1], top2[:, 1:2], top2[:, :1])
    return (scores - best_other)[:, :classes]


@dataclass(frozen=True)
class PrototypeConfig(AdapterConfig):
    classes: tuple[int, ...] = help_field((), "class indices with a prototype; filled from the training data")
    background: bool = help_field(False, "a background prototype too; filled from the training data (True when "
                                  "some valid pixels belong to no foreground class)")
    center: bool = help_field(False, "subtract the mean embedding of all training pixels before comparing")
    temperature: float = help_field(10.0, "logit = temperature × cosine margin (only scales probabilities; the "
                                    "labels are the nearest prototype)")

    def __post_init__(self) -> None:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"Expected distinct classes, got {self.classes!r}.")
        if not self.temperature > 0:
            raise ValueError(f"Expected temperature > 0, got {self.temperature!r}.")


class PrototypeAdapter(Adapter):
    """Training-free, prompt-free: nearest class prototype of frozen encoder features (masked average pooling)."""

    name = "prototype"
    config_class = PrototypeConfig
    uses_prompts = False
    trains_nothing = True

    def inject(self, model: SamModel) -> None:
        self._install(model)

    def _install(self, model: SamModel) -> Prototypes:
        c = self.config
        model.prototype_head = Prototypes(c.classes, model.prompt_encoder.embed_dim, c.background,
                                          c.temperature).to(model.device)
        return model.prototype_head

    def head(self, model: SamModel) -> Prototypes | None:
        return getattr(model, "prototype_head", None)

    def setup(self, model: SamModel, train_data: Any) -> None:
        """Pool the prototypes from ``train_data``; a model loaded from a file already has them."""
        if self.config.classes:
            return
        found = class_features(model, train_data)
        self.config = replace(self.config, classes=found.classes, background=found.background is not None)
        head = self._install(model)
        rows = [found.means] + ([found.background[None]] if found.background is not None else [])
        head.prototypes.copy_(torch.cat(rows).to(head.prototypes))
        if self.config.center:
            head.center.copy_(found.center.to(head.center))
