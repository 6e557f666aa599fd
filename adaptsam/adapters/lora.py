"""``lora``: low-rank updates ΔW = (α/r)·B·A on chosen linear layers (Hu et al., 2021).

By default the update goes on the q and v parts of every encoder block's fused ``qkv`` projection (the
SAMed / MeLo recipe). The parts are located by structure: each backbone's encoder describes where q, k and
v sit in its fused output (SAM ViT: three consecutive blocks; TinyViT: interleaved per head), so the same
adapter works on both families. B starts at zero, so at step 0 the adapted model *is* the frozen model.

The update lives in a child module ``lora`` of the adapted ``nn.Linear`` and is added by a forward hook,
so the base weights keep their names (checkpoints and other adapters still find them). ``merge`` folds ΔW
into the base weight for zero inference overhead; ``unmerge`` takes it out again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field, trainable_modules
from adaptsam.errors import IncompatibleError
from adaptsam.model import FusedSegment, SamModel

TARGETS = ("qv", "qkv", "proj", "mlp", "decoder")
WHOLE = "all"  # name of the single part of a plain (unfused) linear


class LoraDelta(nn.Module):
    """The low-rank update of one linear layer, for its whole output or for named parts of a fused output."""

    adapter_owned = True

    def __init__(self, base: nn.Linear, parts: Mapping[str, FusedSegment] | None, rank: int, alpha: float,
                 dropout: float):
        super().__init__()
        self.parts: dict[str, FusedSegment | None] = dict(parts) if parts else {WHOLE: None}
        self.rank = rank
        self.scale = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        weight = base.weight
        for part, segment in self.parts.items():
            rows = base.out_features if segment is None else segment.rows
            a = nn.Parameter(torch.empty(rank, base.in_features, dtype=weight.dtype, device=weight.device))
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # as PEFT; B = 0 keeps step 0 exact
            self.lora_A[part] = a
            self.lora_B[part] = nn.Parameter(torch.zeros(rows, rank, dtype=weight.dtype, device=weight.device))

    def delta_weight(self, part: str) -> torch.Tensor:
        """ΔW of one part, rows × in_features."""
        return (self.lora_B[part] @ self.lora_A[part]) * self.scale

    def add_delta(self, inputs: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return output
        x = self.dropout(inputs)
        for part, segment in self.parts.items():
            delta = (x @ self.lora_A[part].t()) @ self.lora_B[part].t() * self.scale
            if segment is None:
                output = output + delta
            else:
                segment.view_output(output).add_(delta.unflatten(-1, (segment.heads, segment.width)))
        return output

    @torch.no_grad()
    def merge_into(self, base: nn.Linear, sign: float = 1.0) -> None:
        """Add (sign=+1) or subtract (sign=-1) ΔW to the base weight; refuse if that makes it non-finite."""
        for part, segment in self.parts.items():
            delta = self.delta_weight(part) * sign
            target = base.weight if segment is None else segment.view_weight(base.weight)
            if segment is not None:
                delta = delta.view(segment.heads, segment.width, -1)
            if not torch.isfinite(target + delta).all():
                raise ValueError(f"Merging LoRA part {part!r} would make weights non-finite; nothing changed in "
                                 f"this layer.")
            target.add_(delta)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scale={self.scale:g}, parts={list(self.parts)}, merged={self.merged}"


def _lora_hook(module: nn.Linear, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    return module.lora.add_delta(args[0], output)


def attach_lora(linear: nn.Linear, parts: Mapping[str, FusedSegment] | None, rank: int, alpha: float,
                dropout: float) -> LoraDelta:
    if not isinstance(linear, nn.Linear):
        raise IncompatibleError(f"LoRA adapts nn.Linear layers, got {type(linear).__name__}.")
    if hasattr(linear, "lora"):
        raise IncompatibleError("This linear layer already carries a LoRA update.")
    delta = LoraDelta(linear, parts, rank, alpha, dropout)
    linear.lora = delta  # registered as a child module: trains, saves and moves with the model
    linear.register_forward_hook(_lora_hook)
    return delta


def decoder_linears(model: SamModel) -> list[nn.Linear]:
    """Linear layers of the mask decoder's two-way transformer (attention projections and MLPs)."""
    return [m for m in model.mask_decoder.transformer.modules() if isinstance(m, nn.Linear)]


def inject_lora(model: SamModel, targets: Iterable[str], rank: int, alpha: float, dropout: float) -> None:
    targets = set(targets)
    for site in model.attention_sites():
        if "qkv" in targets:
            attach_lora(site.qkv, site.segments, rank, alpha, dropout)
        elif "qv" in targets:
            attach_lora(site.qkv, {p: site.segments[p] for p in ("q", "v")}, rank, alpha, dropout)
        if "proj" in targets:
            attach_lora(site.proj, None, rank, alpha, dropout)
        if "mlp" in targets:
            for linear in site.mlp:
                attach_lora(linear, None, rank, alpha, dropout)
    if "decoder" in targets:
        for linear in decoder_linears(model):
            attach_lora(linear, None, rank, alpha, dropout)
    for _, delta in lora_layers(model):
        trainable_modules(delta)


def lora_layers(model: nn.Module) -> list[tuple[nn.Linear, LoraDelta]]:
    """Every (adapted linear, its update) pair, found by structure."""
    return [(m, m.lora) for m in model.modules() if isinstance(m, nn.Linear) and isinstance(
        getattr(m, "lora", None), LoraDelta)]


def merge_lora(model: nn.Module) -> None:
    for linear, delta in lora_layers(model):
        if not delta.merged:
            delta.merge_into(linear, +1.0)
            delta.merged = True


def unmerge_lora(model: nn.Module) -> None:
    for linear, delta in lora_layers(model):
        if delta.merged:
            delta.merge_into(linear, -1.0)
            delta.merged = False


@dataclass(frozen=True)
class LoraConfig(AdapterConfig):
    rank: int = help_field(8, "r, the rank of each update")
    alpha: float = help_field(8.0, "α; updates are scaled by α/r")
    dropout: float = help_field(0.0, "dropout on the update's input")
    targets: tuple[str, ...] = help_field(("qv",), f"where updates go, any of {TARGETS}: q and v (or q, k and v) "
                                          "parts of encoder qkv, encoder attention output projections, encoder "
                                          "MLP linears, mask decoder linears")
    train_decoder: bool = help_field(False, "also fine-tune the whole mask decoder")

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"Expected rank >= 1, got {self.rank!r}.")
        if not self.alpha > 0:
            raise ValueError(f"Expected alpha > 0, got {self.alpha!r}.")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"Expected dropout in [0, 1), got {self.dropout!r}.")
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown or not self.targets:
            raise ValueError(f"Expected targets among {TARGETS}, got {self.targets!r}.")
        if {"qv", "qkv"} <= set(self.targets):
            raise ValueError("targets 'qv' and 'qkv' overlap; pick one.")


class LoraAdapter(Adapter):
    """LoRA on the encoder's q/v projections (options: all of qkv, proj, MLP, decoder); merges for inference."""

    name = "lora"
    config_class = LoraConfig
    supports_merge = True

    def inject(self, model: SamModel) -> None:
        c = self.config
        inject_lora(model, c.targets, c.rank, c.alpha, c.dropout)
        if c.train_decoder:
            trainable_modules(model.mask_decoder)

    def merge(self, model: SamModel) -> None:
        merge_lora(model)

    def unmerge(self, model: SamModel) -> None:
        unmerge_lora(model)
