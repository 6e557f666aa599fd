"""``adaptformer``: a parallel bottleneck MLP beside each encoder block's MLP (Chen et al., "AdaptFormer:
Adapting Vision Transformers for Scalable Visual Recognition", NeurIPS 2022).

For every encoder block the MLP's output gets ``s · up(ReLU(down(x̃)))`` added, where x̃ is the MLP's own
(normalised) input: ``x ← x + MLP(LN(x)) + s·AdaptMLP(LN(x))``, the paper's equation 2. ``down`` maps the
block width d to a bottleneck b, ``up`` maps back; ``up`` starts at zero, so at step 0 the adapted model
*is* the frozen model. The branch is non-linear, so there is nothing to merge.

The MLP is located by structure (``SamModel.attention_sites()`` lists each block's two MLP linears): the
branch reads the first linear's input and is added to the second linear's output, which is the MLP's input
and output for both SAM's ``MLPBlock`` and TinyViT's ``Mlp`` (whose LayerNorm sits inside the MLP).

Trainable parameters per block: ``d·b + b + b·d + d`` (plus the decoder with ``train_decoder``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import nn

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field, trainable_modules
from adaptsam.bench.flops import FlopContext, FlopCount
from adaptsam.errors import ConfigError, IncompatibleError
from adaptsam.model import SamModel


class AdaptMlp(nn.Module):
    """The parallel branch ``s · up(ReLU(down(x)))`` of one block (down: Kaiming-uniform, up: zero)."""

    adapter_owned = True

    def __init__(self, dim: int, bottleneck: int, scale: float, dropout: float, learnable_scale: bool,
                 like: torch.Tensor):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck, dtype=like.dtype, device=like.device)
        self.up = nn.Linear(bottleneck, dim, dtype=like.dtype, device=like.device)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if learnable_scale:
            self.scale = nn.Parameter(torch.tensor(float(scale), dtype=like.dtype, device=like.device))
        else:
            self.register_buffer("scale", torch.tensor(float(scale), dtype=like.dtype, device=like.device))
        self._pending: torch.Tensor | None = None  # the branch output between the two MLP linears

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.dropout(torch.relu(self.down(x)))) * self.scale


def _on_mlp_input(branch: AdaptMlp, module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
    # a forward hook (after the first linear, on its input), not a pre-hook: a pre-hook on a layer tells the
    # FLOP walk that trained work feeds that layer's input, which is true only past the first block
    branch._pending = branch(args[0])


def _on_mlp_output(branch: AdaptMlp, module: nn.Module, args: tuple[torch.Tensor, ...],
                   output: torch.Tensor) -> torch.Tensor:
    pending, branch._pending = branch._pending, None
    if pending is None:
        raise RuntimeError("AdaptFormer: the MLP's second linear ran without its first; the branch input is "
                           "unknown (was the MLP restructured after the adapter was applied?).")
    return output + pending


@dataclass(frozen=True)
class AdaptFormerConfig(AdapterConfig):
    bottleneck: int = help_field(64, "b, the width of the bottleneck (the paper's default: 64)")
    scale: float = help_field(0.1, "s, the factor on the branch output (the paper's default: 0.1)")
    learnable_scale: bool = help_field(False, "train s too (one scalar per block)")
    dropout: float = help_field(0.0, "dropout inside the branch, after the ReLU")
    train_decoder: bool = help_field(False, "also fine-tune the whole mask decoder")

    def __post_init__(self) -> None:
        if not isinstance(self.bottleneck, int) or isinstance(self.bottleneck, bool) or self.bottleneck < 1:
            raise ConfigError(f"Expected bottleneck to be an integer >= 1, got {self.bottleneck!r}.")
        if not isinstance(self.scale, (int, float)) or isinstance(self.scale, bool) or not math.isfinite(self.scale):
            raise ConfigError(f"Expected scale to be a finite number, got {self.scale!r}.")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"Expected dropout in [0, 1), got {self.dropout!r}.")
        for name in ("learnable_scale", "train_decoder"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"Expected {name} to be true or false, got {getattr(self, name)!r}.")


class AdaptFormerAdapter(Adapter):
    """AdaptFormer: a scaled bottleneck MLP in parallel with each encoder block's MLP (not mergeable)."""

    name = "adaptformer"
    config_class = AdaptFormerConfig

    def inject(self, model: SamModel) -> None:
        c = self.config
        for site in model.attention_sites():
            if len(site.mlp) < 2:
                raise IncompatibleError(f"AdaptFormer needs each block's MLP as two linears; "
                                        f"{model.info.name} describes {len(site.mlp)}.")
            first, last = site.mlp[0], site.mlp[-1]
            if first.in_features != last.out_features:
                raise IncompatibleError(f"AdaptFormer adds the branch to the MLP output, so the MLP must map d → d; "
                                        f"got {first.in_features} → {last.out_features}.")
            branch = AdaptMlp(first.in_features, c.bottleneck, c.scale, c.dropout, c.learnable_scale, first.weight)
            last.adaptformer = branch  # a child module: trains, saves and moves with the model
            first.register_forward_hook(functools.partial(_on_mlp_input, branch))
            last.register_forward_hook(functools.partial(_on_mlp_output, branch))
            trainable_modules(branch)
        if c.train_decoder:
            trainable_modules(model.mask_decoder)

    def extra_flops(self, model: SamModel, context: FlopContext) -> FlopCount:
        """The branch's two products on every token the MLP's first linear projects (window padding
        included in ``executed``, as for that linear). In a training step ``up`` costs 3× (forward, its weight's
        and its input's gradients), ``down`` 2× unless a gradient flows into the MLP's input."""
        total = FlopCount(0.0, 0.0, 0.0)
        for site in model.attention_sites():
            first, last = site.mlp[0], site.mlp[-1]
            branch = getattr(last, "adaptformer", None)
            if branch is None:
                continue
            tokens = context.linear_tokens(first)
            down = 2.0 * branch.down.in_features * branch.down.out_features
            up = 2.0 * branch.up.in_features * branch.up.out_features
            into_input = 3 if context.input_grad(first) else 2
            total += FlopCount(tokens.executed * (down + up), tokens.useful * (down + up),
                               tokens.executed * (into_input * down + 3 * up))
        return total

