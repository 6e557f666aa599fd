"""``ln_tuning``: fine-tune only the normalisation layers' affine parameters γ, β of the image encoder
(Zhao et al., "Tuning LayerNorm in Attention: Towards Efficient Multi-Modal LLM Finetuning", ICLR 2024;
Basu et al., "Strong Baselines for Parameter Efficient Few-Shot Fine-tuning", AAAI 2024; one of the
methods of the SAM PEFT benchmarks, Teuber et al., MIDL 2025).

Normalisation layers are found by structure: a module whose own ``weight`` is a per-channel vector
(``nn.LayerNorm``, SAM's and TinyViT's ``LayerNorm2d`` in the neck) — a linear or convolution has a matrix
or a kernel. BatchNorm (TinyViT's convolutional stages) is left out unless ``batchnorm=True``; its running
statistics stay pretrained either way (``SamModel.train``). Nothing is added to the model: nothing to merge,
no inference overhead, and step 0 is the frozen model. These are pretrained tensors, so the training engine
gives them ``lr`` (not ``adapter_lr``).

Trainable parameters: ``2·C`` per normalisation layer of width C (SAM ViT-B: 12 blocks × 2 LayerNorms ×
2·768 + the neck's 2 × 2·256 = 37,888).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field
from adaptsam.bench.flops import ZERO, FlopContext, FlopCount
from adaptsam.errors import ConfigError
from adaptsam.model import SamModel


def normalisation_layers(root: nn.Module, *, batchnorm: bool = False) -> list[nn.Module]:
    """Modules under ``root`` whose own ``weight`` is one-dimensional (normalisation layers), in module order."""
    found = []
    for module in root.modules():
        weight = dict(module.named_parameters(recurse=False)).get("weight")
        if weight is None or weight.dim() != 1:
            continue
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not batchnorm:
            continue
        found.append(module)
    return found


@dataclass(frozen=True)
class LnTuningConfig(AdapterConfig):
    batchnorm: bool = help_field(False, "also tune BatchNorm γ, β (TinyViT's convolutional stages)")
    decoder: bool = help_field(False, "also tune the mask decoder's normalisation layers")

    def __post_init__(self) -> None:
        for name in ("batchnorm", "decoder"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"Expected {name} to be true or false, got {getattr(self, name)!r}.")


class LnTuningAdapter(Adapter):
    """LayerNorm tuning: only the encoder's normalisation γ, β train (option: the decoder's); nothing is added."""

    name = "ln_tuning"
    config_class = LnTuningConfig

    def inject(self, model: SamModel) -> None:
        c = self.config
        roots = [model.image_encoder, model.mask_decoder] if c.decoder else [model.image_encoder]
        for root in roots:
            for norm in normalisation_layers(root, batchnorm=c.batchnorm):
                norm.requires_grad_(True)

    def extra_flops(self, model: SamModel, context: FlopContext) -> FlopCount:
        """Adds no work: the same layers, some of their tensors trained."""
        return ZERO
