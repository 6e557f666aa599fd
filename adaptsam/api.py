"""The public functions re-exported by ``adaptsam``: registration, listing and ``create_model``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from adaptsam import registry
from adaptsam.errors import ConfigError
from adaptsam.model import SamModel

#: The policy used when none is named (create_model, train/eval/predict): R×R goes in as it is, the cheap way
#: (4–16× fewer encoder FLOPs than upsampling to the design size; identical to it at the design size).
DEFAULT_POLICY = "native"


def register_backbone(name: str | None = None, obj: Any = None, **kwargs: Any) -> Any:
    """Register a backbone factory ``(checkpoint=None, pretrained=True, download=False) -> SamModel``."""
    return registry.backbones.register(name, obj, **kwargs)


def register_adapter(name: str | None = None, obj: Any = None, **kwargs: Any) -> Any:
    """Register an :class:`~adaptsam.adapters.base.Adapter` subclass."""
    return registry.adapters.register(name, obj, **kwargs)


def register_policy(name: str | None = None, obj: Any = None, **kwargs: Any) -> Any:
    """Register a :class:`~adaptsam.policies.base.ResolutionPolicy` subclass."""
    return registry.policies.register(name, obj, **kwargs)


def register_dataset(name: str | None = None, obj: Any = None, **kwargs: Any) -> Any:
    """Register a dataset factory ``(split="train", *, root=None, **options) -> SegmentationDataset``."""
    return registry.datasets.register(name, obj, **kwargs)


def list_backbones(pattern: str = "*") -> list[str]:
    return registry.backbones.names(pattern)


def list_adapters(pattern: str = "*") -> list[str]:
    return registry.adapters.names(pattern)


def list_policies(pattern: str = "*") -> list[str]:
    return registry.policies.names(pattern)


def list_datasets(pattern: str = "*") -> list[str]:
    return registry.datasets.names(pattern)


def build_policy(policy: Any, policy_cfg: Mapping[str, Any] | None = None) -> Any:
    """A policy instance from a registered name (+ options) or an instance given as is."""
    if isinstance(policy, str):
        cls = registry.policies.get(policy)
        if policy_cfg is not None and not isinstance(policy_cfg, Mapping):
            raise ConfigError(f"Expected policy_cfg for {policy!r} to be a mapping of options, got {policy_cfg!r}.")
        try:  # unknown keys (TypeError) and bad values (a plugin's ValueError) are bad user input
            return cls(**dict(policy_cfg or {}))
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            import dataclasses

            known = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
            raise ConfigError(f"Bad options {dict(policy_cfg or {})} for policy {policy!r}: {exc}. Options: "
                              f"{', '.join(known) or 'none'}.") from exc
    if policy_cfg:
        raise ConfigError("policy_cfg only applies when the policy is given by name.")
    return policy


def create_model(backbone: str, *, checkpoint: str | os.PathLike[str] | None = None, pretrained: bool = True,
                 download: bool = False, policy: Any = DEFAULT_POLICY, resolution: int | None = None,
                 policy_cfg: Mapping[str, Any] | None = None, adapter: Any = None,
                 adapter_cfg: Mapping[str, Any] | None = None, seed: int = 0, device: Any = None) -> SamModel:
    """Build ``backbone``, prepare it for ``resolution`` with ``policy``, and apply ``adapter``.

    ``resolution`` defaults to the backbone's design size; ``pretrained=False`` gives random weights (the
    model's ``info.pretrained`` says so); ``download=True`` allows fetching missing official weights.
    Random initialisation (of a random backbone, of adapter layers) is drawn from ``seed`` on a forked RNG, so
    the same call gives the same model and the caller's RNG state is untouched.
    ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a torch.device; default None: stay on the CPU) moves
    the finished model there; it is built and initialised on the CPU first, so a seed gives the same weights on
    every device. A device that can't be used is a ConfigError before anything is built.
    """
    import torch

    from adaptsam.devices import resolve_device

    target = None if device is None else resolve_device(device)
    factory = registry.backbones.get(backbone)
    policy_obj = build_policy(policy, policy_cfg)
    adapter_obj = None
    if adapter is not None:
        from adaptsam.adapters.base import build_adapter

        adapter_obj = build_adapter(adapter, adapter_cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory(checkpoint=checkpoint, pretrained=pretrained, download=download)
        if not isinstance(model, SamModel):
            entry = registry.backbones.entry(backbone)
            raise TypeError(f"Backbone {backbone!r} from {entry.source} returned {type(model).__name__}, "
                            f"expected an adaptsam.SamModel.")
        model.init_seed = seed
        policy_obj.prepare(model, model.design_size if resolution is None else resolution)
        if adapter_obj is not None:
            adapter_obj.apply(model)
    return model if target is None else model.to(target)


def save_adapter(model: SamModel, path: str | os.PathLike[str]) -> Any:
    """Write only the adapter's trained tensors, with metadata, as safetensors (atomically)."""
    from adaptsam.adapters.io import save_adapter as _save

    return _save(model, path)


def load_adapter(path: str | os.PathLike[str], model: SamModel | None = None, *,
                 checkpoint: str | os.PathLike[str] | None = None, download: bool = False,
                 strict_backbone: bool = True, device: Any = None) -> SamModel:
    """Rebuild backbone + policy + adapter from an adapter file (or load it into ``model``).

    Without ``model``, the backbone (``checkpoint``/``download`` as in :func:`create_model`), policy and
    resolution come from the file's metadata; :func:`adaptsam.adapters.io.load_into` then checks the model
    against the file, applies the adapter and reads the tensors. ``device=`` (``auto``, ``cpu``, ``cuda[:N]``)
    moves the model there before the tensors are read, so they are loaded straight onto it."""
    import json

    from adaptsam.adapters.io import load_into, read_metadata

    if model is None:
        metadata = read_metadata(path)
        policy = json.loads(metadata["policy"])
        policy_name = policy.pop("name")
        model = create_model(metadata["backbone"], checkpoint=checkpoint, download=download,
                             pretrained=json.loads(metadata["backbone_pretrained"]), policy=policy_name,
                             policy_cfg=policy, resolution=int(metadata["resolution"]),
                             seed=int(metadata.get("backbone_init_seed", "0")))
    return load_into(model, path, strict_backbone=strict_backbone, device=device)


def merge_adapter(model: SamModel) -> SamModel:
    """Fold the adapter into the base weights (zero inference overhead), where the adapter supports it."""
    _require_adapter(model).merge(model)
    return model


def unmerge_adapter(model: SamModel) -> SamModel:
    """Undo :func:`merge_adapter`."""
    _require_adapter(model).unmerge(model)
    return model


def _require_adapter(model: SamModel) -> Any:
    if getattr(model, "adapter", None) is None:
        from adaptsam.errors import IncompatibleError

        raise IncompatibleError("The model carries no adapter.")
    return model.adapter
