"""``vpt``: visual prompt tuning (Jia et al., ECCV 2022) for windowed SAM encoders.

VPT-deep gives every encoder block its own T prompt tokens; VPT-shallow prompts only the first block of
each stage (a plain ViT has one stage; TinyViT has three attention stages of different widths, so each
needs prompts of its own width). How the tokens enter a windowed block is explained in
:mod:`adaptsam_vpt.prompts`. The encoder is otherwise frozen; the mask decoder trains by default.

Blocks and their attention are found by structure: ``model.prompt_stages()`` lists each stage's blocks,
``model.attention_sites()`` each block's fused ``qkv`` (with where q, k and v sit in it) and ``proj``.
The hooks are bound with ``functools.partial``, so ``copy.deepcopy(model)`` re-binds them to the copy.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from torch import nn

from adaptsam.adapters.base import Adapter, AdapterConfig, help_field, trainable_modules
from adaptsam.bench.flops import ZERO, FlopContext, FlopCount
from adaptsam.errors import IncompatibleError
from adaptsam.model import AttentionSite, SamModel
from adaptsam_vpt.prompts import BlockPrompts, VptPrompts, add_readout, read_prompts


@dataclass(frozen=True)
class VptConfig(AdapterConfig):
    tokens: int = help_field(8, "T, learnable prompt tokens per prompted block")
    deep: bool = help_field(True, "prompt every encoder block (VPT-deep); false: only the first block of each "
                            "stage (VPT-shallow)")
    train_decoder: bool = help_field(True, "also fine-tune the mask decoder")

    def __post_init__(self) -> None:
        if not isinstance(self.tokens, int) or isinstance(self.tokens, bool) or self.tokens < 1:
            raise ValueError(f"Expected tokens to be an integer >= 1, got {self.tokens!r}.")
        for name in ("deep", "train_decoder"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Expected {name} to be true or false, got {getattr(self, name)!r}.")


def _site_of(block: nn.Module, sites: list[AttentionSite]) -> AttentionSite:
    """The attention site whose ``qkv`` lives inside ``block``."""
    inside = {id(m) for m in block.modules()}
    found = [s for s in sites if id(s.qkv) in inside]
    if len(found) != 1:
        raise IncompatibleError(f"VPT expected exactly one attention site (qkv linear) inside encoder block "
                                f"{type(block).__name__}, found {len(found)}; the backbone's prompt_stages() and "
                                f"attention_sites() disagree.")
    return found[0]


def _heads_of(block: nn.Module, site: AttentionSite) -> int:
    """Attention heads of ``site``: the ``num_heads`` of the module in ``block`` that owns its qkv."""
    for module in block.modules():
        if getattr(module, "qkv", None) is site.qkv and isinstance(getattr(module, "num_heads", None), int):
            return module.num_heads
    raise IncompatibleError(f"VPT needs the number of attention heads of {type(block).__name__}'s attention: "
                            f"expected the module holding its qkv to have an integer num_heads.")


class VptAdapter(Adapter):
    """Visual prompt tuning: T learnable tokens per block read by every window via a zero-init gated attention."""

    name = "vpt"
    config_class = VptConfig

    def inject(self, model: SamModel) -> None:
        c = self.config
        sites = model.attention_sites()
        blocks = self._prompted_blocks(model)
        if not blocks:
            raise IncompatibleError(f"{model.info.name}'s encoder lists no blocks to prompt (prompt_stages() is "
                                    f"empty).")
        prompted: list[BlockPrompts] = []
        for block in blocks:
            site = _site_of(block, sites)
            prompts = BlockPrompts(c.tokens, site.qkv.in_features, _heads_of(block, site), dict(site.segments))
            prompts.to(device=site.qkv.weight.device, dtype=site.qkv.weight.dtype)
            site.qkv.register_forward_hook(functools.partial(read_prompts, prompts))
            site.proj.register_forward_pre_hook(functools.partial(add_readout, prompts))
            prompted.append(prompts)
        container = VptPrompts(prompted)
        model.image_encoder.vpt = container
        trainable_modules(container)
        if c.train_decoder:
            trainable_modules(model.mask_decoder)

    def _prompted_blocks(self, model: SamModel) -> list[nn.Module]:
        return [block for stage in model.prompt_stages() for block in (stage.blocks if self.config.deep else
                                                                       stage.blocks[:1])]

    def extra_flops(self, model: SamModel, context: FlopContext) -> FlopCount:
        """Per prompted block: the T prompt tokens through the frozen qkv (once per call: shared by the batch),
        then every token's query against the prompts' keys and values (padding tokens: executed, not useful).
        Training: the prompts' projection 2× (their gradient, not the frozen weight's), the read-out 3×, the
        scores 2× plus the queries' gradient when one flows into the block."""
        total = ZERO
        sites = model.attention_sites()
        for block, prompts in zip(self._prompted_blocks(model), model.image_encoder.vpt.blocks):
            qkv = _site_of(block, sites).qkv
            tokens, count = context.linear_tokens(qkv), prompts.tokens.shape[0]
            project = 2.0 * count * qkv.in_features * qkv.out_features / context.batch
            scores, read = 2.0 * count * prompts.q.rows, 2.0 * count * prompts.v.rows
            per_token = scores + read
            into = 3 if context.input_grad(qkv) else 2
            total += FlopCount(project + tokens.executed * per_token, project + tokens.useful * per_token,
                               2 * project + tokens.executed * (into * scores + 3 * read))
        return total
