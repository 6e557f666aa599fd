"""``upsample``: resize R×R input to the backbone's design size, predict, resize logits back to R."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from adaptsam.model import Prompts, SamModel
from adaptsam.policies.base import ResolutionPolicy, set_prompt_grid

INTERPOLATIONS = ("bilinear", "bicubic")


@dataclass(frozen=True)
class UpsamplePolicy(ResolutionPolicy):
    """Resize R×R to the design size (SAM's usual path); costs the full design-size encoder."""

    name = "upsample"
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"Expected interpolation in {INTERPOLATIONS}, got {self.interpolation!r}.")

    def configure(self, model: SamModel, resolution: int) -> None:
        model.image_encoder.set_input_size(model.design_size)
        set_prompt_grid(model, model.design_size)

    def images_to_model(self, images: torch.Tensor, model: SamModel) -> torch.Tensor:
        size = model.design_size
        if images.shape[-1] == size:
            return images
        return F.interpolate(images, size=(size, size), mode=self.interpolation, align_corners=False)

    def prompts_to_model(self, prompts: Prompts, model: SamModel) -> Prompts:
        return prompts.scaled(model.design_size / model.resolution)
