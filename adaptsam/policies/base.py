"""The resolution-policy interface.

A policy is a frozen dataclass (its fields are its options) with three jobs:

* ``prepare(model, R)`` adapts a freshly built :class:`~adaptsam.model.SamModel` to R×R input once
  (position embeddings, token grids, the prompt encoder's sizes), after checking that R is usable;
* ``images_to_model`` / ``prompts_to_model`` map an R×R batch and its prompts to what the encoder sees;
* ``logits_to_output`` maps the decoder's logits back to R×R.

Prompts and outputs are always in the user's R×R pixels, whatever the policy does inside.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch

from adaptsam.errors import IncompatibleError
from adaptsam.model import Prompts, SamModel, resize_logits

MIN_RESOLUTION = 32


@dataclass(frozen=True)
class ResolutionPolicy(ABC):
    """Base class of resolution policies; subclasses are frozen dataclasses registered by entry point."""

    name: ClassVar[str] = ""

    def prepare(self, model: SamModel, resolution: int) -> SamModel:
        """Check ``resolution`` and set ``model`` up for it; returns the same model."""
        if model.policy is not None and model.policy != self:
            raise IncompatibleError(f"{model.info.name} was already prepared by policy {model.policy!r}; build a "
                                    f"fresh model to use {self!r}.")
        self.validate(model, resolution)
        self.configure(model, resolution)
        model.policy = self
        model.resolution = resolution
        return model

    def validate(self, model: SamModel, resolution: int) -> None:
        if not isinstance(resolution, int) or isinstance(resolution, bool):
            raise IncompatibleError(f"Expected an integer resolution, got {resolution!r}.")
        if not MIN_RESOLUTION <= resolution <= model.design_size:
            raise IncompatibleError(f"Resolution {resolution} is outside [{MIN_RESOLUTION}, {model.design_size}] "
                                    f"for {model.info.name} (design size {model.design_size}).")

    @abstractmethod
    def configure(self, model: SamModel, resolution: int) -> None:
        """Adapt the model's modules to ``resolution`` (called once, after validation)."""

    @abstractmethod
    def images_to_model(self, images: torch.Tensor, model: SamModel) -> torch.Tensor:
        """Normalised B×3×R×R images → the encoder's input."""

    @abstractmethod
    def prompts_to_model(self, prompts: Prompts, model: SamModel) -> Prompts:
        """Prompts in R×R input pixels → the prompt encoder's input pixels."""

    def logits_to_output(self, logits: torch.Tensor, model: SamModel) -> torch.Tensor:
        """Decoder logits → B×M×R×R logits (bilinear on logits, never on thresholded masks)."""
        return resize_logits(logits, model.resolution)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


def set_prompt_grid(model: SamModel, input_size: int) -> None:
    """Tell SAM's prompt encoder the input size and the image-embedding grid it now works on."""
    grid = input_size // model.patch_stride
    encoder = model.prompt_encoder
    encoder.input_image_size = (input_size, input_size)
    encoder.image_embedding_size = (grid, grid)
    encoder.mask_input_size = (4 * grid, 4 * grid)
