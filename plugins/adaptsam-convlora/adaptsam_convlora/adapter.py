"""``convlora``: Conv-LoRA (Zhong et al., "Convolution Meets LoRA", ICLR 2024) on every encoder attention block.

Each block's fused ``qkv`` gets a :class:`~adaptsam_convlora.layer.ConvLoraDelta` on its q and v parts (the
same parts adaptsam's ``lora`` adapts by default, so the two rows of a bench differ only by the
convolutional bottleneck); ``targets=("qkv",)`` adapts k too. Blocks, their layout and their qkv are found
by structure (``model.prompt_stages()`` and ``model.attention_sites()``); hooks are bound with
``functools.partial`` so ``copy.deepcopy`` of the model re-binds them to the copy.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from torch import nn

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field, trainable_modules
from adaptsam.bench.flops import ZERO, FlopContext, FlopCount
from adaptsam.errors import IncompatibleError
from adaptsam.model import AttentionSite, SamModel
from adaptsam_convlora.grid import RECORDERS
from adaptsam_convlora.layer import ConvLoraDelta, conv_lora_hook

TARGETS = {"qv": ("q", "v"), "qkv": ("q", "k", "v")}


@dataclass(frozen=True)
class ConvLoraConfig(AdapterConfig):
    rank: int = help_field(8, "r, the bottleneck width (channels of the convolutions)")
    alpha: float = help_field(8.0, "α; the update is scaled by α/r")
    scales: tuple[int, ...] = help_field((1, 2, 3, 4), "one convolution expert per integer upsampling scale")
    top_k: int = help_field(1, "experts each image uses (1 = the paper's sparse top-1 gate; len(scales) = dense)")
    targets: str = help_field("qv", f"parts of each encoder qkv to update: one of {tuple(TARGETS)}")
    train_decoder: bool = help_field(False, "also fine-tune the whole mask decoder")

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise ValueError(f"Expected rank to be an integer >= 1, got {self.rank!r}.")
        if not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise ValueError(f"Expected alpha > 0, got {self.alpha!r}.")
        if not self.scales or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in self.scales):
            raise ValueError(f"Expected scales to be a non-empty tuple of integers >= 1, got {self.scales!r}.")
        if len(set(self.scales)) != len(self.scales):
            raise ValueError(f"Expected distinct scales, got {self.scales!r}; two experts at one scale are one "
                             f"expert with twice the parameters.")
        if not isinstance(self.top_k, int) or not 1 <= self.top_k <= len(self.scales):
            raise ValueError(f"Expected top_k in [1, {len(self.scales)}] (the number of scales), got {self.top_k!r}.")
        if self.targets not in TARGETS:
            raise ValueError(f"Expected targets in {tuple(TARGETS)}, got {self.targets!r}.")
        if not isinstance(self.train_decoder, bool):
            raise ValueError(f"Expected train_decoder to be true or false, got {self.train_decoder!r}.")


def _site_of(block: nn.Module, sites: list[AttentionSite]) -> AttentionSite:
    inside = {id(m) for m in block.modules()}
    found = [s for s in sites if id(s.qkv) in inside]
    if len(found) != 1:
        raise IncompatibleError(f"Conv-LoRA expected exactly one attention site (qkv linear) inside encoder block "
                                f"{type(block).__name__}, found {len(found)}; the backbone's prompt_stages() and "
                                f"attention_sites() disagree.")
    return found[0]


class ConvLoraAdapter(Adapter):
    """Conv-LoRA: LoRA on q/v whose bottleneck runs a gated mixture of multi-scale convolutions on the token grid."""

    name = "convlora"
    config_class = ConvLoraConfig

    def inject(self, model: SamModel) -> None:
        c = self.config
        sites = model.attention_sites()
        for stage in model.prompt_stages():
            if stage.layout not in RECORDERS:
                raise IncompatibleError(f"Conv-LoRA knows token layouts {tuple(RECORDERS)}; {model.info.name} has a "
                                        f"stage with layout {stage.layout!r}.")
            for block in stage.blocks:
                site = _site_of(block, sites)
                if hasattr(site.qkv, "conv_lora"):
                    raise IncompatibleError("This qkv linear already carries a Conv-LoRA update.")
                parts = {p: site.segments[p] for p in TARGETS[c.targets]}
                delta = ConvLoraDelta(site.qkv, parts, c.rank, c.alpha, c.scales, c.top_k)
                delta.to(device=site.qkv.weight.device, dtype=site.qkv.weight.dtype)
                site.qkv.conv_lora = delta  # a child module: trains, saves and moves with the model
                block.register_forward_pre_hook(functools.partial(RECORDERS[stage.layout], delta))
                site.qkv.register_forward_hook(functools.partial(conv_lora_hook, delta))
                trainable_modules(delta)
        if c.train_decoder:
            trainable_modules(model.mask_decoder)

    def merge(self, model: SamModel) -> None:
        raise IncompatibleError("Conv-LoRA cannot be merged into the base weights: its update convolves neighbouring "
                                "tokens and its gate depends on the image, so it is no fixed matrix ΔW. Run the "
                                "model unmerged (or use the 'lora' adapter where merging matters).")

    def unmerge(self, model: SamModel) -> None:
        raise IncompatibleError("Conv-LoRA is never merged, so there is nothing to unmerge.")

    def extra_flops(self, model: SamModel, context: FlopContext) -> FlopCount:
        """Per adapted qkv: A on every token it projects, the gate, the chosen experts' 3×3 convolutions on the
        real grid (upsampled ×s), and the up-projection (to all of qkv's rows). Which experts run depends on
        the image: counted as the ``top_k`` most expensive ones, an upper bound. Training: 3× everything but
        A, which is 2× unless a gradient flows into the block."""
        total = ZERO
        sites = model.attention_sites()
        for stage in model.prompt_stages():
            for block in stage.blocks:
                qkv = _site_of(block, sites).qkv
                delta = qkv.conv_lora
                tokens = context.linear_tokens(qkv)
                height, width = context.block_grid(block)
                rank, mixture = delta.rank, delta.mixture
                down, up = 2.0 * rank * qkv.in_features, 2.0 * rank * qkv.out_features
                experts = sorted((2.0 * 9 * rank * rank * (e.scale * height) * (e.scale * width)
                                  for e in mixture.experts), reverse=True)[:mixture.top_k]
                grid = sum(experts) + 2.0 * rank * mixture.gate.out_features
                into = 3 if context.input_grad(qkv) else 2
                total += FlopCount(tokens.executed * (down + up) + grid, tokens.useful * (down + up) + grid,
                                   tokens.executed * (into * down + 3 * up) + 3 * grid)
        return total
