"""``persam``: training-free PerSAM (Zhang et al., "Personalize Segment Anything Model with One Shot", 2023).

PerSAM turns a reference mask into prompts for a new image: the *target embedding* is the mean frozen
image embedding under the reference mask; its cosine similarity with every cell of the new image's
embedding is a *location confidence map*; the most similar pixel becomes a positive point and the least
similar a negative point, and SAM's decoder segments from those two points. Here that runs once per class
(the target embedding is pooled over all k shots of the class, the one-shot case being k = 1) and the
label map is the per-pixel argmax over the class masks, with background where no class mask is confident
(``threshold``; 0 when every pixel belongs to some class, as in CamVid).

Prompts: ``prompt="points"`` is the paper's positive/negative point pair. LiteMedSAM, the bench's backbone,
was trained on boxes only and barely segments from points (one positive point inside a 14-px disc gives a
2-pixel mask). On the synthetic 2-class set (no clutter) at native R=64, 2 shots per class, 8 test images,
points give mean Dice 0.004 (0.062 with centred features: pooled IoU disc/square 0.075/0.024, where random
labels get 0.053/0.055). The default ``prompt="box"`` therefore gives the decoder the box around the pixels
whose nearest target embedding is the class's (a background target competes where the data has one), in
the spirit of PerSAM's box refinement pass: mean Dice 0.368, pooled IoU 0.268/0.094 there.

Left out of the paper's method (each needs the decoder's internals, not its inputs): target-guided
attention and target-semantic prompting, and the cascaded post-refinement passes. Nothing trains and
nothing is random.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field
from adaptsam.adapters.head import PromptFreeHead
from adaptsam.adapters.prototype import class_features, cosine_maps
from adaptsam.model import Prompts, SamModel, SamOutput

PROMPTS = ("points", "box")


class TargetEmbeddings(PromptFreeHead):
    """One target embedding per class; each image is decoded once per class from its best/worst points."""

    def __init__(self, classes: tuple[int, ...], dim: int, threshold: float, negative: bool, prompt: str = "box",
                 background: bool = False):
        super().__init__(classes, threshold)
        self.register_buffer("targets", torch.zeros(len(classes) + int(background), dim))  # background last
        self.register_buffer("center", torch.zeros(dim))
        self.negative = negative
        self.prompt = prompt

    def confidence(self, model: SamModel, embeddings: torch.Tensor) -> torch.Tensor:
        """B×K×R×R location confidence: cosine similarity of each cell with each target embedding (the C classes',
        then the background's where the data has one)."""
        similarity = cosine_maps(embeddings.float(), self.targets.float(), self.center.float())
        return model.policy.logits_to_output(similarity, model)

    def points(self, model: SamModel, embeddings: torch.Tensor) -> Prompts:
        """The location confidence map at R → per class one positive point (most similar pixel) and, with
        ``negative``, one negative point (least similar), in input pixels."""
        confidence = self.confidence(model, embeddings)[:, :len(self.class_ids)]
        flat = confidence.flatten(2)  # B×C×R²
        picks = [flat.argmax(-1)] + ([flat.argmin(-1)] if self.negative else [])
        index = torch.stack(picks, -1)  # B×C×P
        r = confidence.shape[-1]
        coords = torch.stack([index % r, torch.div(index, r, rounding_mode="floor")], -1).to(embeddings.dtype)
        labels = torch.zeros(index.shape, dtype=embeddings.dtype, device=embeddings.device)
        labels[..., 0] = 1
        return Prompts(point_coords=coords, point_labels=labels)

    def boxes(self, model: SamModel, embeddings: torch.Tensor) -> Prompts:
        """Per class the box around the pixels whose nearest target embedding is that class's (background
        included); a class that is nowhere nearest gets the one-pixel box at its most confident pixel."""
        confidence = self.confidence(model, embeddings)
        classes = len(self.class_ids)
        region = confidence.argmax(1, keepdim=True) == torch.arange(classes, device=confidence.device).view(1, -1, 1, 1)
        mine = confidence[:, :classes]
        region |= (mine == mine.flatten(2).amax(-1)[..., None, None]) & ~region.flatten(2).any(-1)[..., None, None]
        r = confidence.shape[-1]
        index = torch.arange(r, device=confidence.device)
        edges = []
        for occupied in (region.any(-2), region.any(-1)):  # columns (x), rows (y): B×C×R
            edges.append((torch.where(occupied, index, r).amin(-1), torch.where(occupied, index, -1).amax(-1)))
        (x0, x1), (y0, y1) = edges
        return Prompts(boxes=torch.stack([x0, y0, x1, y1], -1).to(embeddings.dtype))

    def forward(self, model: SamModel, embeddings: torch.Tensor) -> SamOutput:
        prompts = self.boxes(model, embeddings) if self.prompt == "box" else self.points(model, embeddings)
        return model.decode(embeddings, prompts)


@dataclass(frozen=True)
class PerSamConfig(AdapterConfig):
    classes: tuple[int, ...] = help_field((), "class indices with a target embedding; filled from the training data")
    threshold: float | None = help_field(None, "background where the best class probability is below this; None: "
                                         "0.5 for data with a background class, 0 (plain argmax) otherwise")
    center: bool = help_field(False, "subtract the mean embedding of all training pixels before comparing (not "
                              "in the paper; helps points, hurts boxes on the synthetic set)")
    negative: bool = help_field(True, "add the least similar pixel as a negative point (as PerSAM does)")
    prompt: str = help_field("box", "points: PerSAM's positive/negative points; box: the box around the pixels "
                             "nearest to the class's target (for box-trained backbones such as LiteMedSAM)")
    background: bool = help_field(False, "a background target too (competes in box mode); filled from the data")

    def __post_init__(self) -> None:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"Expected distinct classes, got {self.classes!r}.")
        if self.threshold is not None and not 0 <= self.threshold < 1:
            raise ValueError(f"Expected threshold in [0, 1) or None, got {self.threshold!r}.")
        if self.prompt not in PROMPTS:
            raise ValueError(f"Expected prompt in {PROMPTS}, got {self.prompt!r}.")


class PerSamAdapter(Adapter):
    """Training-free, prompt-free PerSAM: class target embedding → confidence map → ± point → decoder."""

    name = "persam"
    config_class = PerSamConfig
    uses_prompts = False
    trains_nothing = True

    def inject(self, model: SamModel) -> None:
        self._install(model)

    def _install(self, model: SamModel) -> TargetEmbeddings:
        c = self.config
        threshold = 0.5 if c.threshold is None else c.threshold
        model.persam_head = TargetEmbeddings(c.classes, model.prompt_encoder.embed_dim, threshold,
                                             c.negative, c.prompt, c.background).to(model.device)
        return model.persam_head

    def head(self, model: SamModel) -> TargetEmbeddings | None:
        return getattr(model, "persam_head", None)

    def setup(self, model: SamModel, train_data: Any) -> None:
        """Pool each class's target embedding from ``train_data``; a model loaded from a file already has them."""
        if self.config.classes:
            return
        found = class_features(model, train_data)
        threshold = self.config.threshold
        if threshold is None:  # no background class: every valid pixel is some class's
            threshold = 0.5 if found.background is not None else 0.0
        self.config = replace(self.config, classes=found.classes, threshold=threshold,
                              background=found.background is not None)
        head = self._install(model)
        rows = [found.means] + ([found.background[None]] if found.background is not None else [])
        head.targets.copy_(torch.cat(rows).to(head.targets))
        if self.config.center:
            head.center.copy_(found.center.to(head.center))
