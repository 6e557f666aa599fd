"""``lora``: low-rank updates ΔW = (α/r)·B·A on chosen linear layers (Hu et al., 2021).

By default the update goes on the q and v parts of every encoder block's fused ``qkv`` projection (the
SAMed / MeLo recipe). Target ``qkv`` gives q, k and v one rank-r update *each* (r·(3·in + out)
parameters, effective rank 3r); ``qkv_fused`` gives the whole fused projection one rank-r update, as PEFT
and SAMed do when pointed at the ``qkv`` linear (r·(in + out) parameters: 2/3 of ``qkv``'s when out = 3·in).
The parts are located by structure: each backbone's encoder describes where q, k and v sit in its fused
output (SAM ViT: three consecutive blocks; TinyViT: interleaved per head), so the same
adapter works on both families. B starts at zero, so at step 0 the adapted model *is* the frozen model.

The update lives in a child module ``lora`` of the adapted ``nn.Linear`` and is added by a forward hook,
so the base weights keep their names (checkpoints and other adapters still find them). ``merge`` folds ΔW
into the base weight for zero inference overhead; ``unmerge`` takes it out again. Both are all-or-nothing,
like PEFT's ``safe_merge``: every layer's new weight is computed and checked finite before any is
written, and a failure while writing restores the weights already written, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field, trainable_modules
from adaptsam.bench.flops import ZERO, FlopContext, FlopCount
from adaptsam.errors import IncompatibleError
from adaptsam.model import FusedSegment, SamModel

TARGETS = ("qv", "qkv", "qkv_fused", "proj", "mlp", "decoder")
_QKV_TARGETS = ("qv", "qkv", "qkv_fused")  # all adapt the fused qkv linear: at most one of them
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
    def full_delta(self, weight: torch.Tensor) -> torch.Tensor:
        """ΔW of every part placed in a tensor shaped like the base ``weight`` (zero where no part is)."""
        delta = torch.zeros_like(weight)
        for part, segment in self.parts.items():
            if segment is None:
                delta += self.delta_weight(part)
            else:
                segment.view_weight(delta).add_(self.delta_weight(part).view(segment.heads, segment.width, -1))
        return delta

    def unmerged_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """What the base ``weight`` is without this update, as a new tensor (for saving a merged model)."""
        return weight.detach() - self.full_delta(weight) if self.merged else weight

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
        if "qkv_fused" in targets:
            attach_lora(site.qkv, None, rank, alpha, dropout)
        elif "qkv" in targets:
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


@torch.no_grad()
def _set_merged(model: nn.Module, merged: bool) -> None:
    """Merge (or unmerge) every layer not yet in that state, all or nothing (see the module docstring)."""
    sign, verb = (1.0, "Merging") if merged else (-1.0, "Unmerging")
    plan = []
    for linear, delta in lora_layers(model):
        if delta.merged == merged:
            continue
        change = delta.full_delta(linear.weight) * sign
        if not torch.isfinite(linear.weight + change).all():
            bad = [p for p in delta.parts if not torch.isfinite(delta.delta_weight(p)).all()]
            raise IncompatibleError(f"{verb} LoRA would make the weights of {_name_of(model, linear)} non-finite "
                                    f"(non-finite update in part(s) {bad or list(delta.parts)}); no layer was "
                                    f"changed. The adapter's tensors hold NaN/inf: retrain or reload them.")
        plan.append((linear, delta, change))
    done = []
    try:
        for linear, delta, change in plan:
            done.append((linear, delta, linear.weight.detach().clone()))
            linear.weight.add_(change)
            delta.merged = merged
    except BaseException:
        for linear, delta, original in done:  # put back exactly what was there
            linear.weight.copy_(original)
            delta.merged = not merged
        raise


def _name_of(model: nn.Module, module: nn.Module) -> str:
    return next((name for name, m in model.named_modules() if m is module), type(module).__name__)


def merge_lora(model: nn.Module) -> None:
    """Fold every LoRA update into its base weight (all layers or, on failure, none)."""
    _set_merged(model, True)


def unmerge_lora(model: nn.Module) -> None:
    """Take every merged LoRA update out of its base weight again (all layers or none)."""
    _set_merged(model, False)


@dataclass(frozen=True)
class LoraConfig(AdapterConfig):
    rank: int = help_field(8, "r, the rank of each update")
    alpha: float = help_field(8.0, "α; updates are scaled by α/r")
    dropout: float = help_field(0.0, "dropout on the update's input")
    targets: tuple[str, ...] = help_field(("qv",), f"where updates go, any of {TARGETS}: qv = one update each on "
                                          "the q and v parts of encoder qkv; qkv = three updates (q, k, v: "
                                          "1.5x PEFT's parameters for r on qkv); qkv_fused = one update on the "
                                          "whole fused qkv (as PEFT/SAMed); proj = encoder attention output "
                                          "projections; mlp = encoder MLP linears; decoder = mask decoder "
                                          "linears")
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
        chosen = sorted(set(self.targets) & set(_QKV_TARGETS))
        if len(chosen) > 1:
            raise ValueError(f"targets {chosen} all adapt the fused qkv projection; pick one of {_QKV_TARGETS}.")


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

    def extra_flops(self, model: SamModel, context: FlopContext) -> FlopCount:
        return lora_flops(model, context)


def lora_flops(model: SamModel, context: FlopContext) -> FlopCount:
    """Unmerged updates cost x·Aᵀ then ·Bᵀ per part on every token the adapted linear projects (padding
    tokens included in ``executed``, as for the linear itself); merged ones nothing. In a training step
    B's product costs 3× (forward, B's and the input's gradients), A's 2× unless a gradient flows into x."""
    total = ZERO
    for linear, delta in lora_layers(model):
        if delta.merged:
            continue
        tokens = context.linear_tokens(linear)
        down = 3 if context.input_grad(linear) else 2  # A's gradient, and the input's when one flows there
        for segment in delta.parts.values():
            rows = linear.out_features if segment is None else segment.rows
            a, b = 2.0 * delta.rank * linear.in_features, 2.0 * delta.rank * rows
            total += FlopCount(tokens.executed * (a + b), tokens.useful * (a + b),
                               tokens.executed * (down * a + 3 * b))
    return total
