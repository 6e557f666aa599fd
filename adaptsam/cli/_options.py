"""Options shared by several commands: model, data and training flags, YAML configs, key=value configs."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from adaptsam.errors import ConfigError
from adaptsam.train_config import PROMPT_MODES, TrainConfig

if TYPE_CHECKING:  # the engine imports torch: every command's parser is built without it (adaptsam --version)
    from adaptsam.engine.experiment import Experiment

T = TypeVar("T")
FINISHED_RUN_FILES = ("metrics.json", "adapter.safetensors")  # what a finished train/eval run leaves

TRAIN_FLAGS = {  # flag → TrainConfig field
    "steps": "steps", "batch_size": "batch_size", "lr": "lr", "adapter_lr": "adapter_lr",
    "weight_decay": "weight_decay", "grad_accum": "grad_accum", "prompt": "prompt", "cache_dir": "cache_dir",
    "workers": "num_workers",
}


def parse_mapping(text: str | None, option: str = "--adapter-cfg") -> dict[str, Any]:
    """``'{"rank": 8}'`` (JSON) or ``rank=8,targets=[qv]`` (values parsed as YAML) → dict.

    Malformed text is a :class:`ConfigError` naming ``option`` and the text (one line from the CLI, no
    traceback); whether the keys and values suit the adapter or policy is checked by its config class.
    """
    if not text:
        return {}
    text = text.strip()
    example = "e.g. rank=8,alpha=16 or '{\"rank\": 8}'"
    if text.startswith("{"):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{option} {text!r} is not valid JSON ({exc.msg} at character {exc.pos}); expected "
                              f"a JSON object or key=value pairs, {example}.") from exc
        if not isinstance(values, dict):
            raise ConfigError(f"{option} {text!r} is JSON but not an object; expected {example}.")
        return values
    out: dict[str, Any] = {}
    for item in _split_top_level(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} {text!r}: expected key=value pairs separated by commas, got {item!r}; "
                              f"{example}.")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{option} {text!r}: cannot parse the value of {key.strip()!r} ({value!r}): "
                              f"{str(exc).splitlines()[0]}.") from exc
    return out


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{(" and 1 or (char in "]})" and -1 or 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p for p in [*parts, current] if p.strip()]


def add_model_options(parser: argparse.ArgumentParser, *, adapter_default: str | None = None) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--backbone", help="registered backbone (adaptsam list backbone), e.g. lite_medsam")
    group.add_argument("--checkpoint", help="backbone weights file (default: official weights, see README)")
    group.add_argument("--random-init", action="store_true", default=None,
                       help="random backbone weights (marked untrained everywhere)")
    group.add_argument("--adapter", default=adapter_default, help="registered adapter, e.g. lora")
    group.add_argument("--adapter-cfg", help="adapter options: JSON or key=value,... (e.g. rank=8,alpha=16)")
    group.add_argument("--policy", help="resolution policy: native or upsample (or a plugin)")
    group.add_argument("--policy-cfg", help="policy options: JSON or key=value,...")
    group.add_argument("--resolution", "-R", type=int, help="input side R in pixels")
    add_download_option(group)
    add_device_options(group)


def add_device_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                       precision: bool = True, default: str | None = "auto") -> None:
    """``--device`` (every command that builds a model) and, where it computes, ``--precision``/``--no-bf16``.

    ``default=None`` leaves the device to a config file (bench specs); unset, that is ``auto`` too."""
    parser.add_argument("--device", default=default,
                        help="auto (default: CUDA when available), cpu, cuda or cuda:N")
    if precision:
        parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None,
                            help="autocast precision (default auto: bf16 on CUDA, fp32 on CPU; weights stay fp32)")
        parser.add_argument("--no-bf16", dest="precision", action="store_const", const="fp32",
                            help="same as --precision fp32")


def device_from_args(args: argparse.Namespace) -> Any:
    """The torch.device ``--device`` names (``auto`` resolved); a device that can't be used is a ConfigError."""
    from adaptsam.devices import resolve_device

    return resolve_device(getattr(args, "device", None) or "auto")


DOWNLOAD_HELP = ("fetch missing official backbone weights into $ADAPTSAM_HOME/checkpoints (verified by sha256; "
                 "nothing is downloaded without this flag)")


def add_download_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)


def fetch_checkpoints(backbones: list[str] | tuple[str, ...], *, download: bool) -> None:
    """``--download``: get every named backbone's official weights before work starts.

    Building the backbone once with ``download=True`` runs the one download path (``assets``: sha256
    required, progress bar, timeout); afterwards the file is in ``$ADAPTSAM_HOME/checkpoints``, where every
    later build of the command (bench cells, ncut settings) finds it without the flag.
    """
    if not download:
        return
    from adaptsam.registry import backbones as registry

    for name in dict.fromkeys(backbones):
        registry.get(name)(checkpoint=None, pretrained=True, download=True)


def weights_backbone(weights: str | None, backbone: str | None) -> list[str]:
    """The backbone a command will build: the adapter file's (its metadata names it) or ``backbone``."""
    if weights:
        from adaptsam.adapters.io import read_metadata

        return [read_metadata(weights)["backbone"]]
    return [backbone] if backbone else []


def add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data", help="registered dataset (kvasir_seg, synthetic, ...) or a folder in adaptsam's "
                                      "layout; shared sets are found under $ADAPTSAM_DATA")
    group.add_argument("--split", dest="eval_split", help="split to evaluate (default: test)")
    group.add_argument("--limit", dest="eval_limit", type=int, help="evaluate only the first N images")
    group.add_argument("--prompt", choices=PROMPT_MODES, help="prompt given to the model")


def add_train_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--shots", type=int, help="k training images per class (few-shot); default: all")
    default = TrainConfig()
    group.add_argument("--steps", type=int, help=f"optimiser steps (default {default.steps})")
    group.add_argument("--batch-size", type=int, help=f"images per step (default {default.batch_size})")
    group.add_argument("--lr", type=float,
                       help=f"learning rate of pretrained weights that train (default {default.lr:g})")
    group.add_argument("--adapter-lr", type=float,
                       help=f"learning rate of adapter-added weights (default {default.adapter_lr:g})")
    group.add_argument("--weight-decay", type=float, help=f"AdamW weight decay (default {default.weight_decay:g})")
    group.add_argument("--grad-accum", type=int, help=f"gradient accumulation steps (default {default.grad_accum})")
    group.add_argument("--seed", type=int, help=f"seed for data order, augmentation, init (default {default.seed})")
    group.add_argument("--cache-dir", help="also keep cached frozen-encoder embeddings on disk here")
    group.add_argument("--workers", type=int, help=f"DataLoader worker processes preparing training batches "
                                                   f"(default {default.num_workers}: in this process; batches are "
                                                   f"the same either way; pinned memory on CUDA)")
    group.add_argument("--wandb", action="store_true", default=None, help="log to Weights & Biases (offline works)")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")


def load_config_file(path: str | None) -> dict[str, Any]:
    """A ``--config`` YAML file as a dict; unreadable, malformed or non-mapping files are a ConfigError."""
    if not path:
        return {}
    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"Cannot read config file {path}: {type(exc).__name__}: {detail}. Expected a YAML "
                          f"mapping of options, e.g. 'backbone: lite_medsam'.") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of options (key: value lines), got a "
                          f"{type(values).__name__}.")
    return values


def build_config(cls: type[T], what: str, **options: Any) -> T:
    """``cls(**options)`` with its validation errors turned into a ConfigError naming ``what``.

    Config classes validate in ``__post_init__`` and raise ``ValueError`` (or ``TypeError`` for a value of
    the wrong type); from the command line that is bad user input, not a bug, so it becomes one line.
    """
    try:
        return cls(**options)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"Bad {what} option: {exc}") from exc


def check_out_dir(path: str | os.PathLike[str], *, force: bool = False,
                  finished: tuple[str, ...] = FINISHED_RUN_FILES, flag: str = "--out") -> Path:
    """Validate an output folder before any work starts, and create it.

    It must be a folder or creatable (not a file, not under a file, writable); a folder already holding
    a finished run (any of ``finished``) is refused unless ``force``, so a second run never silently
    replaces the first one's results.
    """
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {out} is a file; expected a folder (existing or new). Pick another path.")
    if force is False:
        found = [name for name in finished if (out / name).exists()]
        if found:
            raise ConfigError(f"{flag} {out} already holds a finished run ({', '.join(found)}); pass --force to "
                              f"overwrite it, or choose another {flag} folder.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{flag} {out} cannot be created ({type(exc).__name__}: {exc.strerror or exc}); expected "
                          f"a folder that exists or can be created.") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {out} is not writable; expected a folder you can write to.")
    return out


def experiment_from_args(args: argparse.Namespace) -> Experiment:
    """YAML config (``--config``) first, then every flag given on the command line overrides it."""
    from adaptsam.engine.experiment import Experiment

    values = load_config_file(getattr(args, "config", None))
    train = values.pop("train", None) or {}
    if not isinstance(train, dict):
        raise ConfigError(f"'train' in {getattr(args, 'config', None) or 'the config'} must be a mapping of training "
                          f"options (e.g. 'steps: 100'), got {train!r}.")
    train = dict(train)
    for key in ("backbone", "checkpoint", "adapter", "policy", "resolution", "data", "shots", "seed", "eval_split",
                "eval_limit", "prompt", "device", "precision"):
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    if getattr(args, "random_init", None):
        values["pretrained"] = False
    for key in ("adapter_cfg", "policy_cfg"):
        given = parse_mapping(getattr(args, key, None), "--" + key.replace("_", "-"))
        if given:
            base = values.get(key) or {}
            if not isinstance(base, dict):
                raise ConfigError(f"{key} in {args.config} must be a mapping of options (e.g. 'rank: 8'), got "
                                  f"{base!r}.")
            values[key] = {**base, **given}
    for flag, name in TRAIN_FLAGS.items():
        if getattr(args, flag, None) is not None:
            train[name] = getattr(args, flag)
    if "seed" in values:
        train.setdefault("seed", values["seed"])
    if getattr(args, "wandb", None):
        train["wandb"] = True
    if getattr(args, "no_progress", False):
        train["progress"] = False
    values["train"] = train
    return Experiment.from_dict(values)
