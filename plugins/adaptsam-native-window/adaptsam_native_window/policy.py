"""``native_window``: native R×R input, and SAM ViT windows that tile the token grid when padding would dominate.

SAM ViT-B's windowed blocks attend inside 14×14 windows and pad the token grid up to a multiple of 14. At
R = 256 the 16×16 grid becomes 28×28: 784 tokens per image of which 528 (67 %) are padding, attended over
in 8 of the 12 blocks. This policy gives those blocks the divisor of the grid closest to the design
window instead (16 → 16: one window, no padding), via adaptsam's ``NativePolicy(match_window=True)``.

It only switches when the padding is worth removing: with the design window, at least ``min_padding`` of
the tokens the windowed blocks attend over must be padding. At R = 1024 (64 → 70, 16 % padding) a new
window would change the pretrained model at its design size for a small saving, so by default it doesn't.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from adaptsam.backbones.vit_b import matched_window
from adaptsam.errors import IncompatibleError
from adaptsam.model import SamModel
from adaptsam.policies.native import NativePolicy


def padding_fraction(grid: int, window: int) -> float:
    """Fraction of a window-padded ``grid``×``grid`` token map that is padding."""
    padded = math.ceil(grid / window) * window
    return 1.0 - (grid * grid) / (padded * padded)


@dataclass(frozen=True)
class NativeWindowPolicy(NativePolicy):
    """Native R×R; SAM ViT windowed blocks get a window tiling the token grid when padding would dominate."""

    name = "native_window"
    match_window: bool = True
    min_padding: float = 0.2

    def __post_init__(self) -> None:
        if self.match_window is not True:
            raise ValueError(f"native_window always matches windows to the token grid; got match_window="
                             f"{self.match_window!r}. Use the built-in 'native' policy to keep the design window.")
        if isinstance(self.min_padding, bool) or not isinstance(self.min_padding, (int, float)) \
                or not 0.0 <= self.min_padding < 1.0:
            raise ValueError(f"Expected min_padding in [0, 1) (the padding fraction from which the window changes), "
                             f"got {self.min_padding!r}.")

    def validate(self, model: SamModel, resolution: int) -> None:
        if not hasattr(model.image_encoder, "design_window_size"):
            raise IncompatibleError(
                f"native_window changes the attention window of SAM ViT encoders (vit_b, vit_test); "
                f"{model.info.name}'s encoder ({type(model.image_encoder).__name__}) has no such windowed blocks. "
                f"Use policy='native' for {model.info.name}.")
        super().validate(model, resolution)

    def window_for(self, model: SamModel, resolution: int) -> int:
        """The window the windowed blocks will use at ``resolution``."""
        grid = resolution // model.patch_stride
        design = int(model.image_encoder.design_window_size)
        if padding_fraction(grid, design) >= self.min_padding and padding_fraction(grid, design) > 0:
            return matched_window(grid, design)
        return design

    def configure(self, model: SamModel, resolution: int) -> None:
        switch = self.window_for(model, resolution) != model.image_encoder.design_window_size
        NativePolicy(match_window=switch).configure(model, resolution)
