"""Injecting a PEFT method into a SamModel, and finding its layers again by structure.

PEFT's tuner classes replace each target linear by a tuner layer that keeps the original as ``base_layer``
(so ``qkv.weight`` becomes ``qkv.base_layer.weight``); adaptsam's backbone checkpoint is loaded before,
and adapter files hold only the trained tensors, so the new names never meet an old file. The tuner object
itself is not kept: the layers carry everything, including the frozen random projections of VeRA-like
methods (regenerated from their seed, so never stored). PEFT's ``peft_config`` attribute on the model root
is removed again: the model's adapter is ``model.adapter``.

Two adjustments make PEFT's layers fit SAM:

* PEFT's OFT reads any 4-D input as a convolution's (B×C×H×W), but SAM ViT blocks feed their linears
  B×H×W×C tokens. Each tuner layer therefore sees inputs of more than three dimensions flattened to three
  and its output unflattened again: the same numbers, for every method.
* The modules PEFT adds (``lora_A``, ``hada_w1_a``, ``vera_lambda_b`` …: each layer's
  ``adapter_layer_names``) are marked ``adapter_owned``, so adaptsam's engine gives them ``adapter_lr``
  like every added module (pretrained tensors, e.g. with ``bias='all'``, get ``lr``).
"""

from __future__ import annotations

import warnings

import torch
from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from adaptsam.errors import IncompatibleError
from adaptsam.model import SamModel
from adaptsam_peft.options import PeftOptions
from adaptsam_peft.targets import feedforward_linears, module_names, target_linears

ADAPTER_NAME = "default"


def tuner_layers(model: nn.Module) -> list[BaseTunerLayer]:
    """Every PEFT tuner layer in ``model``, in module order (by type, not by name)."""
    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def _flatten_input(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
    x = args[0]
    if not isinstance(x, torch.Tensor) or x.dim() <= 3:
        return None
    module._adaptsam_leading = x.shape[:-1]
    return (x.flatten(0, x.dim() - 3), *args[1:])


def _unflatten_output(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    leading = module.__dict__.pop("_adaptsam_leading", None)
    return output if leading is None else output.reshape(*leading, output.shape[-1])


def inject(model: SamModel, options: PeftOptions) -> list[BaseTunerLayer]:
    """Put the method's layers on the target linears; PEFT marks its own parameters trainable."""
    linears = target_linears(model, options.targets)
    if not linears:
        raise IncompatibleError(f"{options.method.name}: {model.info.name} has no linear layers for targets "
                                f"{options.targets}.")
    names = module_names(model, linears)
    extra = {}
    if options.method.config == "IA3Config":
        ids = {id(m) for m in linears}
        extra["feedforward_modules"] = module_names(model, [m for m in feedforward_linears(model) if id(m) in ids])
    config = options.peft_config(names, **extra)
    tuner_class = PEFT_TYPE_TO_TUNER_MAPPING[config.peft_type]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Aa]lready found a `peft_config`.*")
        tuner_class(model, config, adapter_name=ADAPTER_NAME)
    model.__dict__.pop("peft_config", None)
    layers = tuner_layers(model)
    if len(layers) != len(linears):
        raise IncompatibleError(f"{options.method.name}: PEFT adapted {len(layers)} layers, expected {len(linears)}.")
    for layer in layers:
        for attribute in layer.adapter_layer_names:
            container = getattr(layer, attribute, None)
            if isinstance(container, nn.Module):
                container.adapter_owned = True
        layer.register_forward_pre_hook(_flatten_input)
        layer.register_forward_hook(_unflatten_output)
    return layers


def merge(model: nn.Module) -> None:
    """PEFT's own merge, with its NaN check (``safe_merge``); merged layers are left alone."""
    for layer in tuner_layers(model):
        if not layer.merged:
            layer.merge(safe_merge=True)


def unmerge(model: nn.Module) -> None:
    for layer in tuner_layers(model):
        if layer.merged:
            layer.unmerge()
