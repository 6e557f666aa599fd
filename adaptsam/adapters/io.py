"""Adapter files: safetensors holding only the trained tensors, with metadata to rebuild everything else.

Metadata (all strings, as safetensors requires): adapter name and config, backbone name, the sha256 of the
backbone checkpoint it was trained on (or the init seed of a random backbone), policy, resolution and the
adaptsam version. This module reads, writes and checks such files and loads one into a given model
(:func:`load_into`), refusing a file made for another backbone, adapter, policy or resolution, naming both.
Rebuilding a model from a file's metadata needs the registry and ``create_model``: that is
:func:`adaptsam.api.load_adapter`, one layer up (so this module never imports ``adaptsam.api``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from adaptsam import __version__
from adaptsam.errors import CheckpointError, IncompatibleError
from adaptsam.model import SamModel

FORMAT = "adaptsam.adapter"
FORMAT_VERSION = "1"


def adapter_metadata(model: SamModel) -> dict[str, str]:
    if model.adapter is None or model.policy is None:
        raise IncompatibleError("The model has no adapter to save (build it with create_model(..., adapter=...)).")
    info = model.info
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "adaptsam_version": __version__,
        "adapter": model.adapter.name,
        "adapter_config": json.dumps(model.adapter.config.to_dict(), sort_keys=True),
        "backbone": info.name,
        "backbone_pretrained": json.dumps(info.pretrained),
        "backbone_checkpoint_sha256": info.checkpoint_sha256 or "",
        "backbone_init_seed": str(getattr(model, "init_seed", 0)),
        "policy": json.dumps(model.policy.to_dict(), sort_keys=True),
        "resolution": str(model.resolution),
    }


def save_adapter(model: SamModel, path: str | os.PathLike[str]) -> Path:
    """Write the adapter's trained tensors and metadata to ``path`` atomically (temp file + rename).

    The tensors are those recorded as trainable when the adapter was applied (whatever ``requires_grad``
    says now); a merged model saves its *unmerged* update (``Adapter.saved_state_dict``), so the file loads
    to the same model whether it was saved merged or not."""
    path = Path(path)
    metadata = adapter_metadata(model)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.adapter.saved_state_dict(
        model).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Adapter file {str(path)!r} does not exist.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r} is not a safetensors file ({exc}).") from exc
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is a safetensors file but not an adaptsam adapter (no "
                              f"'format: {FORMAT}' metadata).")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{str(path)!r} has adapter format version {metadata.get('format_version')!r}; this "
                              f"adaptsam reads version {FORMAT_VERSION}.")
    return metadata


def check_model_matches(model: SamModel, metadata: dict[str, str], path: Path, *, strict_backbone: bool) -> None:
    """Refuse a file made for another backbone, weights, policy, resolution or adapter, naming both sides."""
    made_for, got = metadata["backbone"], model.info.name
    if made_for != got:
        raise IncompatibleError(f"{path} was made for backbone {made_for!r}; this model is {got!r}.")
    file_sha = metadata.get("backbone_checkpoint_sha256", "")
    model_sha = model.info.checkpoint_sha256 or ""
    if strict_backbone and file_sha != model_sha:
        def describe(sha: str) -> str:
            return f"checkpoint sha256 {sha[:12]}…" if sha else "random initialisation"
        raise IncompatibleError(f"{path} was trained on {made_for} with {describe(file_sha)}; this model has "
                                f"{describe(model_sha)}. Pass strict_backbone=False to load it anyway.")
    policy = json.loads(metadata["policy"])
    if model.policy is not None and (model.policy.to_dict() != policy or str(model.resolution) !=
                                     metadata["resolution"]):
        raise IncompatibleError(f"{path} was trained with policy {policy} at R={metadata['resolution']}; this model "
                                f"runs {model.policy.to_dict()} at R={model.resolution}.")
    if model.adapter is not None and model.adapter.name != metadata["adapter"]:
        raise IncompatibleError(f"{path} holds a {metadata['adapter']!r} adapter; this model carries "
                                f"{model.adapter.name!r}.")


def load_into(model: SamModel, path: str | os.PathLike[str], *, strict_backbone: bool = True,
              device: Any = None) -> SamModel:
    """Load the adapter file ``path`` into ``model`` (applying its adapter first when the model has none).

    The model is checked against the file's metadata (:func:`check_model_matches`) before anything changes;
    ``device`` moves the model first, so the tensors are read straight onto it."""
    from adaptsam.adapters.base import build_adapter

    path = Path(path)
    metadata = read_metadata(path)
    check_model_matches(model, metadata, path, strict_backbone=strict_backbone)
    if model.adapter is None:
        build_adapter(metadata["adapter"], json.loads(metadata["adapter_config"])).apply(model)
    if device is not None:
        from adaptsam.devices import resolve_device

        model.to(resolve_device(device))
    try:
        tensors = load_file(str(path), device=str(model.device))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"Could not read the tensors of {path}: {exc}") from exc
    model.adapter.load_trainable(model, tensors, source=str(path))
    return model
