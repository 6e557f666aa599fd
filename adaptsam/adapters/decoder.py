"""``decoder``: the mask decoder (optionally the prompt encoder) trains; the image encoder stays frozen.

Because the encoder is frozen, the training engine computes each image's embedding once and reuses it
(see ``adaptsam.engine.cache``), so a training step costs a decoder pass only.
"""

from __future__ import annotations

from dataclasses import dataclass

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field, trainable_modules
from adaptsam.bench.flops import ZERO, FlopContext, FlopCount
from adaptsam.model import SamModel


@dataclass(frozen=True)
class DecoderConfig(AdapterConfig):
    prompt_encoder: bool = help_field(False, "also train the prompt encoder (6,220 parameters on SAM)")


class DecoderAdapter(Adapter):
    """Decoder-only fine-tuning: mask decoder (optionally prompt encoder) trains, encoder frozen."""

    name = "decoder"
    config_class = DecoderConfig

    def inject(self, model: SamModel) -> None:
        trainable_modules(model.mask_decoder)
        if self.config.prompt_encoder:
            trainable_modules(model.prompt_encoder)

    def extra_flops(self, model: SamModel, context: FlopContext) -> FlopCount:
        """Adds no work: the same layers, the decoder's trained."""
        return ZERO
