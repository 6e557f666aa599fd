"""``bitfit``: fine-tune only the bias terms (Ben Zaken, Ravfogel and Goldberg, "BitFit", ACL 2022).

BitFit adds nothing to the model: it unfreezes the additive bias vectors that the pretrained layers
already have (attention projections, MLP linears, convolutions, and the β of normalisation layers) and
leaves every weight matrix frozen. On SAM ViT-B that is ~0.1 % of the encoder; the step-0 model *is*
the frozen model, and nothing has to be merged for inference.

Biases are found by structure: every module's own parameter called ``bias`` (``nn.Linear``, ``nn.Conv2d``,
``nn.LayerNorm``, SAM's ``LayerNorm2d``, TinyViT's BatchNorm …), never by matching parameter-name
substrings. TinyViT's ``attention_biases`` are *relative-position* attention logits, not additive bias
terms of a layer, so BitFit leaves them (and the cached copy TinyViT derives from them) alone.

BatchNorm: adaptsam's ``SamModel.train()`` keeps BatchNorm layers on their pretrained running statistics
while their β trains, since tiny fine-tuning batches would otherwise overwrite them;
``batchnorm_statistics=True`` lets them re-estimate their statistics instead (AdaBN-style).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field
from adaptsam.model import SamModel


def _own_bias(module: nn.Module) -> nn.Parameter | None:
    """The module's own (non-recursive) parameter called ``bias``, if it has one."""
    return dict(module.named_parameters(recurse=False)).get("bias")


def _is_normalisation(module: nn.Module) -> bool:
    """A normalisation layer, by structure: its own ``weight`` is a per-channel vector (a linear or a
    convolution has a matrix or a kernel), so this covers LayerNorm, LayerNorm2d, BatchNorm, GroupNorm."""
    weight = dict(module.named_parameters(recurse=False)).get("weight")
    return weight is not None and weight.dim() == 1


def bias_parameters(root: nn.Module, *, norms: bool = True) -> list[tuple[str, nn.Parameter]]:
    """Every ``(qualified name, bias)`` under ``root``, in module order; ``norms=False`` skips the β of
    normalisation layers. Shared parameters are listed once."""
    found: list[tuple[str, nn.Parameter]] = []
    seen: set[int] = set()
    for name, module in root.named_modules():
        bias = _own_bias(module)
        if bias is None or id(bias) in seen or (not norms and _is_normalisation(module)):
            continue
        seen.add(id(bias))
        found.append((f"{name}.bias" if name else "bias", bias))
    return found


@dataclass(frozen=True)
class BitFitConfig(AdapterConfig):
    decoder: bool = help_field(False, "also train the mask decoder's bias terms")
    norms: bool = help_field(True, "include the β of normalisation layers (LayerNorm, BatchNorm), as BitFit does")
    batchnorm_statistics: bool = help_field(False, "let BatchNorm layers whose bias trains re-estimate their "
                                            "running mean/variance from training batches (default: keep the "
                                            "pretrained statistics)")

    def __post_init__(self) -> None:
        for name in ("decoder", "norms", "batchnorm_statistics"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"Expected {name} to be true or false, got {value!r}.")


class BitFitAdapter(Adapter):
    """BitFit: only bias terms of the image encoder train (option: the mask decoder's too); nothing is added."""

    name = "bitfit"
    config_class = BitFitConfig

    def inject(self, model: SamModel) -> None:
        c = self.config
        roots = [model.image_encoder, model.mask_decoder] if c.decoder else [model.image_encoder]
        for root in roots:
            for _, bias in bias_parameters(root, norms=c.norms):
                bias.requires_grad_(True)
        model.update_batchnorm_statistics = c.batchnorm_statistics
