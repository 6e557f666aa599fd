"""Which linears a PEFT method adapts, found by structure and handed to PEFT as exact module names.

PEFT selects modules by name; adaptsam finds them by structure (``SamModel.attention_sites()`` for the
encoder, the decoder's transformer linears) and passes PEFT their full names, which PEFT matches exactly —
no name patterns, so a backbone with other module names works unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from adaptsam.adapters.lora import decoder_linears
from adaptsam.model import SamModel

TARGETS = ("qkv", "proj", "mlp", "decoder")


def target_linears(model: SamModel, targets: Iterable[str]) -> list[nn.Linear]:
    """The linears of ``targets``, in model order: encoder blocks' whole qkv, proj, MLP; decoder linears."""
    targets = set(targets)
    found: list[nn.Linear] = []
    for site in model.attention_sites():
        found += [site.qkv] if "qkv" in targets else []
        found += [site.proj] if "proj" in targets else []
        found += list(site.mlp) if "mlp" in targets else []
    if "decoder" in targets:
        found += decoder_linears(model)
    return found


def feedforward_linears(model: SamModel) -> list[nn.Linear]:
    """The last linear of each encoder MLP: IA3 scales its *input* (the MLP's hidden activations), as PEFT
    does for transformers' feed-forward down-projections."""
    return [site.mlp[-1] for site in model.attention_sites()]


def module_names(model: nn.Module, modules: Iterable[nn.Module]) -> list[str]:
    names = {id(module): name for name, module in model.named_modules()}
    return [names[id(module)] for module in modules]
