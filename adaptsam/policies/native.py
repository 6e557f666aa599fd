"""``native``: feed R×R input directly; the encoder runs on an (R/stride)² token grid."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adaptsam.errors import IncompatibleError
from adaptsam.model import Prompts, SamModel
from adaptsam.policies.base import ResolutionPolicy, set_prompt_grid


@dataclass(frozen=True)
class NativePolicy(ResolutionPolicy):
    """Run at R×R: position embeddings interpolated, token grids from the input; 4–16× cheaper than upsample.

    ``match_window`` gives windowed blocks the divisor of their token grid closest to the trained window, so
    a 16×16 grid is not padded to 28×28 for 14×14 windows: SAM ViT's windowed blocks, and every TinyViT
    stage (MobileSAM, LiteMedSAM; attention biases re-indexed, see ``backbones/_tinyvit``).
    """

    name = "native"
    match_window: bool = False

    def validate(self, model: SamModel, resolution: int) -> None:
        super().validate(model, resolution)
        if resolution % model.patch_stride:
            low = resolution // model.patch_stride * model.patch_stride
            raise IncompatibleError(
                f"native runs {model.info.name} on a token grid of R/{model.patch_stride}, so R must be a multiple "
                f"of {model.patch_stride}; got {resolution} (nearest: {low} or {low + model.patch_stride}).")
        windowed = any(hasattr(model.image_encoder, a) for a in ("design_window_size", "trained_window_size"))
        if self.match_window and not windowed:  # SAM ViT / TinyViT
            raise IncompatibleError(f"match_window applies to encoders with windowed attention (SAM ViT, "
                                    f"TinyViT); {model.info.name} has none.")

    def configure(self, model: SamModel, resolution: int) -> None:
        if self.match_window:
            model.image_encoder.set_input_size(resolution, match_window=True)
        else:
            model.image_encoder.set_input_size(resolution)
        set_prompt_grid(model, resolution)

    def images_to_model(self, images: torch.Tensor, model: SamModel) -> torch.Tensor:
        return images

    def prompts_to_model(self, prompts: Prompts, model: SamModel) -> Prompts:
        return prompts
