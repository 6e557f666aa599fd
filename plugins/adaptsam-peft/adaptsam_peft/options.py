"""adaptsam configs generated from PEFT's config dataclasses: every scalar PEFT option passes through.

A method's adaptsam config has adaptsam's own options (``targets``, ``train_decoder``) plus the fields of
the PEFT config that take a scalar (``r``, ``lora_alpha``, ``init_weights`` ...), with PEFT's help text and
default (or adaptsam's, where PEFT's does not fit SAM: ``methods.py``). Fields that say *where* the method
goes (``target_modules``, ``layers_to_transform`` ...) are adaptsam's to decide and are not offered, nor are
fields with list/dict values or ones that only apply to other layer types. Values are checked against the
default's type here and then by PEFT itself, which builds its config on construction; every failure is a
``ConfigError`` listing the method's options (unknown option names too: ``AdapterConfig.from_dict``).

The stored config records the PEFT version it was trained with (``peft_version``); loading a file made with
another version warns, since a method's numerics can change between PEFT releases.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import peft

from adaptsam.adapters.base import AdapterConfig, help_field
from adaptsam.errors import ConfigError
from adaptsam_peft.methods import PeftMethod
from adaptsam_peft.targets import TARGETS

#: PEFT fields adaptsam decides (where adapters go, which layers, saving) or that do not apply to SAM
NOT_OPTIONS = frozenset({
    "target_modules", "exclude_modules", "modules_to_save", "layers_to_transform", "layers_pattern",
    "feedforward_modules", "fan_in_fan_out", "target_parameters", "layer_replication", "megatron_config",
    "megatron_core", "trainable_token_indices", "ensure_weight_tying", "use_effective_conv2d", "use_qalora",
    "qalora_group_size", "rank_pattern", "alpha_pattern", "n_frequency_pattern", "lambda_pattern",
})
SCALARS = (bool, int, float, str)
HELP_CHARS = 160


def _base_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(peft.PeftConfig)}


def _short_help(text: object) -> str:
    if isinstance(text, (tuple, list)):  # a few PEFT fields give their help as a tuple of strings
        text = " ".join(str(part) for part in text)
    text = " ".join(str(text).split())
    sentence = text.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= HELP_CHARS else sentence[:HELP_CHARS - 1] + "…"


def peft_options(method: PeftMethod) -> list[tuple[str, Any, str]]:
    """(name, default, help) of the PEFT fields offered as options of ``method``."""
    config_class = getattr(peft, method.config)
    skip = _base_fields() | NOT_OPTIONS | set(method.fixed) | set(method.hidden)
    found = []
    for f in dataclasses.fields(config_class):
        if f.name in skip or f.name.startswith("_"):
            continue
        default = method.defaults.get(f.name, f.default)
        if default is dataclasses.MISSING or not isinstance(default, SCALARS):
            continue  # None, lists, dicts, nested configs: not scalar options
        found.append((f.name, default, _short_help(f.metadata.get("help", "")) + " (PEFT option)"))
    return found


def _check_type(name: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"Expected {name} to be true or false, got {value!r}.")
    elif isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)  # YAML/JSON may say 16.0
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"Expected {name} to be an integer, got {value!r}.")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"Expected {name} to be a number, got {value!r}.")
        return float(value)
    elif isinstance(default, str) and not isinstance(value, (str, bool)):
        raise ConfigError(f"Expected {name} to be a string, got {value!r}.")  # PEFT's init_* take str or bool
    return value


@dataclasses.dataclass(frozen=True)
class PeftOptions(AdapterConfig):
    """adaptsam's own options of every PEFT method; the generated subclass adds the PEFT fields."""

    method: ClassVar[PeftMethod]
    peft_fields: ClassVar[tuple[str, ...]] = ()

    targets: tuple[str, ...] = help_field(("qkv", "proj", "mlp"), f"which nn.Linear layers the method adapts, any "
                                          f"of {TARGETS}: each encoder block's whole fused qkv, attention output "
                                          f"projection, MLP linears, the mask decoder's transformer linears")
    train_decoder: bool = help_field(False, "also fine-tune the whole mask decoder")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown or not self.targets:
            raise ConfigError(f"Expected targets among {TARGETS}, got {self.targets!r}.")
        if not isinstance(self.train_decoder, bool):
            raise ConfigError(f"Expected train_decoder to be true or false, got {self.train_decoder!r}.")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name in self.peft_fields:
            object.__setattr__(self, name, _check_type(name, getattr(self, name), defaults[name]))
        self.peft_config(["placeholder"])  # PEFT validates its own values now, not at apply time

    def peft_values(self) -> dict[str, Any]:
        return {**{name: getattr(self, name) for name in self.peft_fields}, **self.method.fixed}

    def peft_config(self, target_modules: list[str], **extra: Any) -> peft.PeftConfig:
        """The PEFT config for these options on the given module names."""
        config_class = getattr(peft, self.method.config)
        try:
            return config_class(target_modules=target_modules, **self.peft_values(), **extra)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{self.method.name}: PEFT {peft.__version__} refuses these options: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "peft_version": peft.__version__}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> AdapterConfig:
        values = dict(values or {})
        recorded = values.pop("peft_version", None)
        if recorded is not None and recorded != peft.__version__:
            warnings.warn(f"{cls.method.name}: this adapter was trained with PEFT {recorded}; PEFT "
                          f"{peft.__version__} is installed, and a method's numerics can change between "
                          f"releases.", stacklevel=2)
        return super().from_dict(values)


def config_class_for(method: PeftMethod) -> type[PeftOptions]:
    """A frozen dataclass: adaptsam's options + the method's scalar PEFT options, with help text."""
    options = peft_options(method)
    fields = [(name, Any, help_field(default, text)) for name, default, text in options]
    class_name = "".join(part.capitalize() for part in method.name.split("_")) + "Config"
    return dataclasses.make_dataclass(class_name, fields, bases=(PeftOptions,), frozen=True, namespace={
        "method": method, "peft_fields": tuple(name for name, _, _ in options),
        "__doc__": f"Options of {method.name} ({method.paper}); PEFT options pass through to peft.{method.config}."})
