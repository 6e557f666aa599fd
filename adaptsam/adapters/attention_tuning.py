"""``attention_tuning``: fine-tune only the encoder's attention projections (Touvron et al., "Three things
everyone should know about Vision Transformers", ECCV 2022, §3; "attention tuning" in the SAM PEFT
benchmarks, Teuber et al., MIDL 2025).

Each encoder block's fused ``qkv`` linear and attention output projection train, weights and biases; the
MLPs, norms, patch embedding and neck stay frozen. The layers are found by structure
(``SamModel.attention_sites()``). TinyViT's relative-position ``attention_biases`` are not trained (they
are logits tables, and TinyViT caches them in eval mode: DESIGN §9). Nothing is added to the model, so
there is nothing to merge; these are pretrained tensors, so the engine gives them ``lr``.

Trainable parameters per block of width d (qkv rows o): ``o·d + o + d·d + d`` (SAM ViT-B:
12 × (3·768² + 3·768 + 768² + 768) = 28,348,416).
"""

from __future__ import annotations

from dataclasses import dataclass

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field, trainable_modules
from adaptsam.bench.flops import ZERO, FlopContext, FlopCount
from adaptsam.errors import ConfigError
from adaptsam.model import SamModel


@dataclass(frozen=True)
class AttentionTuningConfig(AdapterConfig):
    qkv: bool = help_field(True, "train each block's fused qkv linear")
    proj: bool = help_field(True, "train each block's attention output projection")
    train_decoder: bool = help_field(False, "also fine-tune the whole mask decoder")

    def __post_init__(self) -> None:
        for name in ("qkv", "proj", "train_decoder"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"Expected {name} to be true or false, got {getattr(self, name)!r}.")
        if not (self.qkv or self.proj):
            raise ConfigError("attention_tuning with qkv=false and proj=false trains nothing in the encoder; "
                              "enable one (or use the 'decoder' adapter).")


class AttentionTuningAdapter(Adapter):
    """Attention tuning: only the encoder's qkv and output projections train; nothing is added."""

    name = "attention_tuning"
    config_class = AttentionTuningConfig

    def inject(self, model: SamModel) -> None:
        c = self.config
        for site in model.attention_sites():
            trainable_modules(*([site.qkv] if c.qkv else []), *([site.proj] if c.proj else []))
        if c.train_decoder:
            trainable_modules(model.mask_decoder)

    def extra_flops(self, model: SamModel, context: FlopContext) -> FlopCount:
        """Adds no work: the same layers, some of their tensors trained."""
        return ZERO
