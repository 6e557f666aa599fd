"""``ssf``: scale and shift the deep features (Lian et al., "Scaling & Shifting Your Features: A New Baseline
for Efficient Model Tuning", NeurIPS 2022).

After each chosen operation of the image encoder the output is modulated per channel, ``y ← γ ⊙ y + β``
(channels = the last dimension). The paper puts SSF after every operation; here the targets are the
encoder blocks' fused ``qkv`` linear, attention output projection, MLP linears, and every ``nn.LayerNorm`` of
the image encoder. γ starts at one and β at zero (``init_std`` > 0 draws them as the paper does, from
N(1, σ) and N(0, σ)), so by default step 0 is the frozen model.

Because the modulation is linear, ``merge`` folds it into the preceding operation (``W ← diag(γ)·W``,
``b ← γ ⊙ b + β``: zero inference overhead); ``unmerge`` divides it out again and refuses a γ too close to 0.

Trainable parameters: ``2 · channels`` per target (qkv: 2·3d; proj: 2d; MLP: 2·(h + d); LayerNorm: 2d).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field, trainable_modules
from adaptsam.bench.flops import ZERO, FlopContext, FlopCount
from adaptsam.errors import ConfigError, IncompatibleError
from adaptsam.model import SamModel

TARGETS = ("qkv", "proj", "mlp", "norm")
MIN_SCALE = 1e-6  # |γ| below this cannot be divided out exactly on unmerge


class ScaleShift(nn.Module):
    """γ and β for one operation's output channels."""

    adapter_owned = True

    def __init__(self, channels: int, init_std: float, like: torch.Tensor):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels, dtype=like.dtype, device=like.device))
        self.shift = nn.Parameter(torch.zeros(channels, dtype=like.dtype, device=like.device))
        if init_std > 0:
            nn.init.normal_(self.scale, mean=1.0, std=init_std)
            nn.init.normal_(self.shift, std=init_std)
        self.merged = False

    def forward(self, output: torch.Tensor) -> torch.Tensor:
        return output if self.merged else output * self.scale + self.shift

    @torch.no_grad()
    def merge_into(self, module: nn.Module) -> None:
        weight, bias = module.weight, module.bias
        if bias is None:
            raise IncompatibleError(f"SSF cannot merge its shift into a {type(module).__name__} without a bias.")
        merged_weight = weight * self.scale.view(-1, *([1] * (weight.dim() - 1)))
        merged_bias = bias * self.scale + self.shift
        if not (torch.isfinite(merged_weight).all() and torch.isfinite(merged_bias).all()):
            raise ValueError("Merging SSF would make this layer's weights non-finite, so it is left unmerged; "
                             "layers merged before it stay merged (unmerge_adapter restores the model).")
        weight.copy_(merged_weight)
        bias.copy_(merged_bias)
        self.merged = True

    @torch.no_grad()
    def unmerge_from(self, module: nn.Module) -> None:
        if self.scale.abs().min() < MIN_SCALE:
            raise ValueError(f"SSF cannot unmerge: a scale γ is below {MIN_SCALE:g} in magnitude, so the base "
                             f"weights cannot be recovered by division.")
        weight, bias = module.weight, module.bias
        weight.div_(self.scale.view(-1, *([1] * (weight.dim() - 1))))
        bias.sub_(self.shift).div_(self.scale)
        self.merged = False

    def extra_repr(self) -> str:
        return f"channels={self.scale.numel()}, merged={self.merged}"


def _ssf_hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    return module.ssf(output)


def attach_ssf(module: nn.Module, channels: int, init_std: float) -> ScaleShift:
    if hasattr(module, "ssf"):
        raise IncompatibleError(f"This {type(module).__name__} already carries an SSF modulation.")
    ssf = ScaleShift(channels, init_std, module.weight)
    module.ssf = ssf  # a child module: trains, saves and moves with the model
    module.register_forward_hook(_ssf_hook)
    return ssf


def ssf_layers(model: nn.Module) -> list[tuple[nn.Module, ScaleShift]]:
    """Every (modulated operation, its γ/β) pair, found by structure."""
    return [(m, m.ssf) for m in model.modules() if isinstance(getattr(m, "ssf", None), ScaleShift)]


@dataclass(frozen=True)
class SsfConfig(AdapterConfig):
    targets: tuple[str, ...] = help_field(TARGETS, f"operations whose output is scaled and shifted, any of "
                                          f"{TARGETS}: encoder fused qkv linears, attention output projections, "
                                          f"MLP linears, LayerNorms")
    init_std: float = help_field(0.0, "σ of the N(1, σ) / N(0, σ) initialisation of γ / β (the paper: 0.02); 0 "
                                 "starts at the frozen model")
    train_decoder: bool = help_field(False, "also fine-tune the whole mask decoder")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown or not self.targets:
            raise ConfigError(f"Expected targets among {TARGETS}, got {self.targets!r}.")
        if not isinstance(self.init_std, (int, float)) or not 0 <= self.init_std < math.inf:
            raise ConfigError(f"Expected init_std >= 0, got {self.init_std!r}.")
        if not isinstance(self.train_decoder, bool):
            raise ConfigError(f"Expected train_decoder to be true or false, got {self.train_decoder!r}.")


class SsfAdapter(Adapter):
    """SSF: per-channel scale and shift after the encoder's linears and LayerNorms; merges for inference."""

    name = "ssf"
    config_class = SsfConfig
    supports_merge = True

    def inject(self, model: SamModel) -> None:
        c = self.config
        targets = set(c.targets)
        for site in model.attention_sites():
            linears = ([site.qkv] if "qkv" in targets else []) + ([site.proj] if "proj" in targets else []) + \
                (list(site.mlp) if "mlp" in targets else [])
            for linear in linears:
                attach_ssf(linear, linear.out_features, c.init_std)
        if "norm" in targets:
            for norm in model.image_encoder.modules():
                if isinstance(norm, nn.LayerNorm) and norm.elementwise_affine and norm.weight is not None:
                    attach_ssf(norm, norm.weight.numel(), c.init_std)
        for _, ssf in ssf_layers(model):
            trainable_modules(ssf)
        if c.train_decoder:
            trainable_modules(model.mask_decoder)

    def merge(self, model: SamModel) -> None:
        for module, ssf in ssf_layers(model):
            if not ssf.merged:
                ssf.merge_into(module)

    def unmerge(self, model: SamModel) -> None:
        for module, ssf in ssf_layers(model):
            if ssf.merged:
                ssf.unmerge_from(module)

    def extra_flops(self, model: SamModel, context: FlopContext) -> FlopCount | None:
        """Merged: no work beyond the backbone's layers. Unmerged: not counted (None: the bench shows n/a)."""
        return ZERO if all(delta.merged for _, delta in ssf_layers(model)) else None
