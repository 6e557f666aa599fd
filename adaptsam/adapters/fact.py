"""``fact``: factor-tuning, one low-rank factorisation shared by every encoder block (Jie and Deng, "FacT:
Factor-Tuning for Lightweight Adaptation on Vision Transformer", AAAI 2023).

FacT stacks the weight updates of all blocks into one tensor and factorises it, so the big factors are
shared across blocks and each block keeps only a tiny core:

* **TT** (tensor-train, the default): ``ΔW_{l,j} = s · V · Σ_{l,j} · U`` with shared ``U`` (r × d_in) and
  ``V`` (d_out × r), and an r × r core ``Σ`` per block l and target j;
* **TK** (Tucker / CP-like): ``ΔW_{l,j} = s · V · (Σ_k p_{l,j,k} · C_k) · U`` with a shared r × r × r core
  ``C`` and an r-vector ``p`` per block and target.

Targets are the q, k, v parts of each block's fused ``qkv`` linear and the attention output projection
(default: q and v, as in the SAM PEFT benchmarks). Factors are shared among targets of the same shape, so a
ViT shares one ``U, V`` across all its blocks and a TinyViT one per stage width. ``V`` starts at zero: step
0 is the frozen model. The update is linear in the input, so ``merge``/``unmerge`` fold it in and out.

Trainable parameters, per group of same-shaped targets (n of them, shape d_out × d_in):
TT ``r·d_in + d_out·r + n·r²``; TK ``r·d_in + d_out·r + r³ + n·r``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field, trainable_modules
from adaptsam.bench.flops import ZERO, FlopContext, FlopCount
from adaptsam.errors import ConfigError, IncompatibleError
from adaptsam.model import FusedSegment, SamModel

TARGETS = ("q", "k", "v", "proj")
FORMS = ("tt", "tk")
WHOLE = "all"


class FactFactors(nn.Module):
    """The factors shared by one group of same-shaped targets: U (r × d_in), V (d_out × r), and for TK the
    core C (r × r × r). Lives on the image encoder (``image_encoder.fact_factors``)."""

    adapter_owned = True

    def __init__(self, in_features: int, out_features: int, rank: int, form: str, like: torch.Tensor):
        super().__init__()
        kw = {"dtype": like.dtype, "device": like.device}
        self.u = nn.Parameter(torch.empty(rank, in_features, **kw))
        nn.init.kaiming_uniform_(self.u, a=math.sqrt(5))
        self.v = nn.Parameter(torch.zeros(out_features, rank, **kw))  # zero: step 0 is the frozen model
        if form == "tk":
            self.core = nn.Parameter(torch.empty(rank, rank, rank, **kw))
            nn.init.kaiming_uniform_(self.core, a=math.sqrt(5))


class FactDelta(nn.Module):
    """The per-block cores of one linear layer (one per targeted part), using its group's shared factors."""

    adapter_owned = True

    def __init__(self, parts: Mapping[str, tuple[FusedSegment | None, FactFactors]], rank: int, form: str,
                 scale: float, dropout: float, like: torch.Tensor):
        super().__init__()
        self.segments = {part: segment for part, (segment, _) in parts.items()}
        self._factors = {part: factors for part, (_, factors) in parts.items()}  # shared, owned elsewhere
        self.form, self.scale, self.merged = form, scale, False
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.cores = nn.ParameterDict()
        kw = {"dtype": like.dtype, "device": like.device}
        for part in parts:
            core = torch.empty(rank, rank, **kw) if form == "tt" else torch.empty(1, rank, **kw)
            nn.init.kaiming_uniform_(core, a=math.sqrt(5))
            self.cores[part] = nn.Parameter(core.squeeze(0) if form == "tk" else core)

    def middle(self, part: str) -> torch.Tensor:
        """The r × r matrix between U and V for one part: Σ (TT) or Σ_k p_k C_k (TK)."""
        core = self.cores[part]
        if self.form == "tt":
            return core
        return torch.einsum("k,kij->ij", core, self._factors[part].core)

    def delta_weight(self, part: str) -> torch.Tensor:
        factors = self._factors[part]
        return factors.v @ self.middle(part) @ factors.u * self.scale

    def add_delta(self, inputs: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return output
        x = self.dropout(inputs)
        for part, segment in self.segments.items():
            factors = self._factors[part]
            delta = ((x @ factors.u.t()) @ self.middle(part).t()) @ factors.v.t() * self.scale
            if segment is None:
                output = output + delta
            else:
                segment.view_output(output).add_(delta.unflatten(-1, (segment.heads, segment.width)))
        return output

    @torch.no_grad()
    def merge_into(self, base: nn.Linear, sign: float) -> None:
        for part, segment in self.segments.items():
            delta = self.delta_weight(part) * sign
            target = base.weight if segment is None else segment.view_weight(base.weight)
            if segment is not None:
                delta = delta.view(segment.heads, segment.width, -1)
            if not torch.isfinite(target + delta).all():
                raise ValueError(f"Merging FacT part {part!r} would make weights non-finite; nothing changed.")
            target.add_(delta)

    def extra_repr(self) -> str:
        return f"form={self.form}, scale={self.scale:g}, parts={list(self.segments)}, merged={self.merged}"


def _fact_hook(module: nn.Linear, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    return module.fact.add_delta(args[0], output)


def fact_layers(model: nn.Module) -> list[tuple[nn.Linear, FactDelta]]:
    return [(m, m.fact) for m in model.modules() if isinstance(m, nn.Linear) and isinstance(
        getattr(m, "fact", None), FactDelta)]


@dataclass(frozen=True)
class FactConfig(AdapterConfig):
    rank: int = help_field(8, "r, the rank of the shared factors (FacT-TT: 8 in the paper)")
    form: str = help_field("tt", f"the factorisation, one of {FORMS}: tensor-train (a core per block) or "
                           "Tucker (one shared core, an r-vector per block)")
    scale: float = help_field(1.0, "s, the factor on every update")
    targets: tuple[str, ...] = help_field(("q", "v"), f"where updates go, any of {TARGETS}: parts of each encoder "
                                          "block's fused qkv, and its attention output projection")
    dropout: float = help_field(0.0, "dropout on the update's input")
    train_decoder: bool = help_field(False, "also fine-tune the whole mask decoder")

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise ConfigError(f"Expected rank to be an integer >= 1, got {self.rank!r}.")
        if self.form not in FORMS:
            raise ConfigError(f"Expected form to be one of {FORMS}, got {self.form!r}.")
        if not isinstance(self.scale, (int, float)) or isinstance(self.scale, bool) or not math.isfinite(self.scale):
            raise ConfigError(f"Expected scale to be a finite number, got {self.scale!r}.")
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown or not self.targets:
            raise ConfigError(f"Expected targets among {TARGETS}, got {self.targets!r}.")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"Expected dropout in [0, 1), got {self.dropout!r}.")
        if not isinstance(self.train_decoder, bool):
            raise ConfigError(f"Expected train_decoder to be true or false, got {self.train_decoder!r}.")


class FactAdapter(Adapter):
    """FacT: low-rank updates whose factors are shared across encoder blocks (TT or Tucker); merges."""

    name = "fact"
    config_class = FactConfig
    supports_merge = True

    def inject(self, model: SamModel) -> None:
        c = self.config
        encoder = model.image_encoder
        if hasattr(encoder, "fact_factors"):
            raise IncompatibleError("This image encoder already carries FacT factors.")
        groups = nn.ModuleDict()  # one FactFactors per (d_out, d_in)

        def factors(in_features: int, out_features: int, like: torch.Tensor) -> FactFactors:
            key = f"{out_features}x{in_features}"
            if key not in groups:
                groups[key] = FactFactors(in_features, out_features, c.rank, c.form, like)
            return groups[key]

        for site in model.attention_sites():
            parts = {p: site.segments[p] for p in ("q", "k", "v") if p in c.targets}
            if parts:
                site.qkv.fact = FactDelta({p: (s, factors(site.qkv.in_features, s.rows, site.qkv.weight))
                                           for p, s in parts.items()}, c.rank, c.form, c.scale, c.dropout,
                                          site.qkv.weight)
                site.qkv.register_forward_hook(_fact_hook)
            if "proj" in c.targets:
                proj = site.proj
                site.proj.fact = FactDelta({WHOLE: (None, factors(proj.in_features, proj.out_features, proj.weight))},
                                           c.rank, c.form, c.scale, c.dropout, proj.weight)
                proj.register_forward_hook(_fact_hook)
        encoder.fact_factors = groups
        trainable_modules(groups, *(delta for _, delta in fact_layers(model)))
        if c.train_decoder:
            trainable_modules(model.mask_decoder)

    def merge(self, model: SamModel) -> None:
        for linear, delta in fact_layers(model):
            if not delta.merged:
                delta.merge_into(linear, +1.0)
                delta.merged = True

    def unmerge(self, model: SamModel) -> None:
        for linear, delta in fact_layers(model):
            if delta.merged:
                delta.merge_into(linear, -1.0)
                delta.merged = False

    def extra_flops(self, model: SamModel, context: FlopContext) -> FlopCount | None:
        """Merged: no work beyond the backbone's layers. Unmerged: not counted (None: the bench shows n/a)."""
        return ZERO if all(delta.merged for _, delta in fact_layers(model)) else None
