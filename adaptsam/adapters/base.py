"""The adapter interface: a frozen config dataclass + ``apply(model)`` that injects modules and sets
``requires_grad``, plus saving/loading exactly what was trained.

Like PEFT's tuners, an adapter finds what it trains by structure (its own injected modules, or whole
sub-modules such as the mask decoder), never by lists of parameter names; unlike PEFT the set of methods is
open: any installed distribution can register one under the ``adaptsam.adapters`` entry-point group.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from adaptsam import registry
from adaptsam.errors import CheckpointError, ConfigError, IncompatibleError, format_list
from adaptsam.model import SamModel

if TYPE_CHECKING:
    from adaptsam.adapters.head import PromptFreeHead
    from adaptsam.bench.flops import FlopContext, FlopCount

CONFIG_FORMAT_VERSION = 1


def help_field(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field whose help text ``adaptsam list -v`` and error messages can show."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults so configs stay hashable and frozen")
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


@dataclasses.dataclass(frozen=True)
class AdapterConfig:
    """Base of adapter configs: frozen, validated in ``__post_init__``, serialisable with a version stamp."""

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": CONFIG_FORMAT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> AdapterConfig:
        values = dict(values or {})
        version = values.pop("format_version", CONFIG_FORMAT_VERSION)
        if version != CONFIG_FORMAT_VERSION:
            raise ConfigError(f"{cls.__name__}: config format version {version} is not supported "
                              f"(expected {CONFIG_FORMAT_VERSION}).")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        options = "; ".join(f"{name} ({f.metadata.get('help', '')})" for name, f in fields.items()) or "none"
        unknown = sorted(str(k) for k in set(values) - set(fields))
        if unknown:
            raise ConfigError(f"{cls.__name__} has no option {', '.join(unknown)}. Options: {options}.")
        for name, value in values.items():  # JSON/YAML give lists where the config wants tuples
            if isinstance(value, list):
                values[name] = tuple(value)
        try:  # one error type for bad options, whatever a (plugin's) __post_init__ raises
            return cls(**values)
        except ConfigError:
            raise
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{cls.__name__}: bad option value {values}: {exc} Options: {options}.") from exc

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


class Adapter(ABC):
    """One way of adapting a SamModel. Subclasses set ``name``, ``config_class`` and implement ``inject``."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[AdapterConfig]] = AdapterConfig
    #: False for adapters whose :meth:`head` returns a prompt-free head once applied (known before a model exists,
    #: e.g. for a bench to refuse prompt modes); the model itself asks :meth:`head` (``SamModel.uses_prompts``)
    uses_prompts: ClassVar[bool] = True
    supports_merge: ClassVar[bool] = False
    #: True when nothing trains and the adapter draws no random numbers (its result depends on the seed only
    #: through the k-shot draw): a bench may run such a cell once instead of once per seed
    trains_nothing: ClassVar[bool] = False

    def __init__(self, config: AdapterConfig | Mapping[str, Any] | None = None, **options: Any):
        if config is None or isinstance(config, Mapping):
            config = self.config_class.from_dict({**dict(config or {}), **options})
        elif options:
            config = dataclasses.replace(config, **options)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} expects a {self.config_class.__name__}, got "
                            f"{type(config).__name__}.")
        self.config = config

    # -- applying ------------------------------------------------------------------------------------
    def apply(self, model: SamModel) -> SamModel:
        """Freeze everything, let the adapter inject and unfreeze what it trains; returns the same model."""
        if model.adapter is not None:
            raise IncompatibleError(f"{model.info.name} already carries adapter {model.adapter.name!r}; build a "
                                    f"fresh model to apply {self.name!r}.")
        if model.policy is None:
            raise IncompatibleError("Prepare the model with a resolution policy before applying an adapter "
                                    "(adaptsam.create_model does both).")
        model.requires_grad_(False)
        self.inject(model)
        self.record_trainable(model)
        model.adapter = self
        model.train(model.training)  # frozen BatchNorm stays in eval mode; TinyViT bias caches refresh
        model.refresh_cached_buffers()
        return model

    @abstractmethod
    def inject(self, model: SamModel) -> None:
        """Add this adapter's modules to ``model`` and set ``requires_grad`` on what it trains."""

    def setup(self, model: SamModel, train_data: Any) -> None:  # noqa: B027 - optional hook, no-op by default
        """Data-dependent initialisation before training (class prompts pick their pixels here)."""

    def head(self, model: SamModel) -> PromptFreeHead | None:
        """The prompt-free head this adapter installed on ``model`` (see ``adaptsam.adapters.head``), or None:
        the model segments from user prompts. Prompt-free adapters override this and set ``uses_prompts = False``."""
        return None

    def extra_flops(self, model: SamModel, context: FlopContext) -> FlopCount | None:
        """FLOPs per image this adapter adds to one forward of ``model`` as it stands (e.g. 0 once merged),
        beyond the backbone's own layers, which ``adaptsam.bench.flops`` counts; ``context`` says how many
        tokens each of those linears projects and each encoder block's grid. None (the default): unknown,
        so the bench shows "n/a". Adapters that add no work return ``FlopCount(0.0, 0.0)``."""
        return None

    # -- merging -------------------------------------------------------------------------------------
    def merge(self, model: SamModel) -> None:
        raise IncompatibleError(f"Adapter {self.name!r} has nothing to merge into the base weights.")

    def unmerge(self, model: SamModel) -> None:
        raise IncompatibleError(f"Adapter {self.name!r} has nothing to unmerge.")

    # -- what gets stored ----------------------------------------------------------------------------
    def record_trainable(self, model: SamModel) -> None:
        """Remember which parameters train, by name, as ``inject`` left them (called by :meth:`apply`).

        Saving and loading use this record, never the live ``requires_grad`` flags: a caller who freezes
        the model (``model.requires_grad_(False)`` before export or evaluation) must still be able to save
        what was trained. Modules the adapter owns (``adapter_owned``) are saved whole in any case, so a
        head installed later by :meth:`setup` is saved too.
        """
        self.trained_parameters = frozenset(n for n, p in model.named_parameters() if p.requires_grad)

    def _trains(self, name: str, parameter: nn.Parameter) -> bool:
        recorded = getattr(self, "trained_parameters", None)
        return parameter.requires_grad if recorded is None else name in recorded

    def trainable_state_dict(self, model: SamModel) -> dict[str, torch.Tensor]:
        """The parameters recorded as trainable at :meth:`apply`, every tensor of modules the adapter owns,
        and the persistent buffers of modules that train (BatchNorm statistics); keyed by their names in
        ``model``. These are the live tensors (:meth:`load_trainable` copies into them)."""
        state: dict[str, torch.Tensor] = {}
        for module_name, module in model.named_modules():
            own = list(module.named_parameters(recurse=False))
            owned = getattr(module, "adapter_owned", False) or any(
                getattr(m, "adapter_owned", False) for m in _ancestors(model, module_name))
            trains = owned or any(self._trains(_join(module_name, n), p) for n, p in own)
            for name, parameter in own:
                if owned or self._trains(_join(module_name, name), parameter):
                    state[_join(module_name, name)] = parameter
            if trains:
                for name, buffer in module.named_buffers(recurse=False):
                    if name not in module._non_persistent_buffers_set:
                        state[_join(module_name, name)] = buffer
        return state

    def saved_state_dict(self, model: SamModel) -> dict[str, torch.Tensor]:
        """What an adapter file holds: :meth:`trainable_state_dict`, but never a merged weight.

        When a merged update sits on a layer whose base weight also trains (LoRA on decoder linears with
        ``train_decoder``), the saved weight is the *unmerged* one (W, not W + ΔW): loading it and applying
        ΔW again then gives the merged model, instead of W + 2ΔW. Modules that know how (``merged`` and
        ``unmerged_weight``, e.g. ``LoraDelta``, a child of the layer it adapts) are asked.
        """
        state = dict(self.trainable_state_dict(model))
        for name, module in model.named_modules():
            if getattr(module, "merged", False) and callable(getattr(module, "unmerged_weight", None)):
                key = _join(name.rpartition(".")[0], "weight")
                if key in state:
                    state[key] = module.unmerged_weight(state[key])
        return state

    def load_trainable(self, model: SamModel, state: Mapping[str, torch.Tensor], *, source: str = "state") -> None:
        """Copy ``state`` into the adapter's tensors; refuse missing, unexpected, mis-shaped or non-finite
        entries (a NaN adapter would load and silently score 0)."""
        expected = self.trainable_state_dict(model)
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        mismatched = sorted(f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
                            for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
        if missing or unexpected or mismatched:
            parts = [f"{len(missing)} missing: {format_list(missing)}" if missing else "",
                     f"{len(unexpected)} unexpected: {format_list(unexpected)}" if unexpected else "",
                     f"{len(mismatched)} other shapes: {format_list(mismatched, 4)}" if mismatched else ""]
            raise CheckpointError(f"{source} does not fit adapter {self.name!r} on {model.info.name}: "
                                  + "; ".join(p for p in parts if p) + ".")
        broken = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
        if broken:
            raise CheckpointError(f"{source} holds non-finite values (NaN or inf) in {len(broken)} tensor(s): "
                                  f"{format_list(broken)}; expected finite weights. The run that wrote it "
                                  f"diverged: retrain (e.g. with a lower learning rate).")
        with torch.no_grad():
            for key, tensor in expected.items():
                tensor.copy_(state[key].to(dtype=tensor.dtype, device=tensor.device))
        model.refresh_cached_buffers()

    # -- facts ---------------------------------------------------------------------------------------
    @staticmethod
    def encoder_frozen(model: SamModel) -> bool:
        """True when nothing in (or hooked into) the image encoder trains: embeddings can be cached."""
        return not any(p.requires_grad for p in model.image_encoder.parameters())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config.to_dict()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _ancestors(model: nn.Module, module_name: str) -> list[nn.Module]:
    """The modules above ``module_name`` (its parent, the parent's parent, …), not the model itself."""
    parts = module_name.split(".") if module_name else []
    found, current = [], model
    for part in parts[:-1]:
        current = getattr(current, part)
        found.append(current)
    return found


def build_adapter(adapter: str | Adapter, config: Mapping[str, Any] | AdapterConfig | None = None) -> Adapter:
    """An adapter instance from a registered name (+ config) or an instance given as is."""
    if isinstance(adapter, Adapter):
        if config:
            raise ValueError("adapter_cfg only applies when the adapter is given by name.")
        return adapter
    cls = registry.adapters.get(adapter)
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        entry = registry.adapters.entry(adapter)
        raise TypeError(f"Adapter {adapter!r} from {entry.source} is {cls!r}, expected an adaptsam Adapter subclass.")
    return cls(config)


def trainable_modules(*modules: nn.Module) -> None:
    """Unfreeze every parameter of ``modules``."""
    for module in modules:
        module.requires_grad_(True)
