"""Options shared by several commands: model, data and training flags, YAML configs, key=value configs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from adaptsam.engine.experiment import Experiment
from adaptsam.engine.train import TrainConfig

TRAIN_FLAGS = {  # flag → TrainConfig field
    "steps": "steps", "batch_size": "batch_size", "lr": "lr", "adapter_lr": "adapter_lr",
    "weight_decay": "weight_decay", "grad_accum": "grad_accum", "prompt": "prompt", "cache_dir": "cache_dir",
}


def parse_mapping(text: str | None) -> dict[str, Any]:
    """``'{"rank": 8}'`` (JSON) or ``rank=8,targets=[qv]`` (values parsed as YAML) → dict."""
    if not text:
        return {}
    text = text.strip()
    if text.startswith("{"):
        return json.loads(text)
    out: dict[str, Any] = {}
    for item in _split_top_level(text):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"Expected key=value pairs separated by commas, got {item!r}.")
        out[key.strip()] = yaml.safe_load(value)
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


def add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data", help="registered dataset (kvasir_seg, synthetic, ...) or a folder in adaptsam's "
                                      "layout; shared sets are found under $ADAPTSAM_DATA")
    group.add_argument("--split", dest="eval_split", help="split to evaluate (default: test)")
    group.add_argument("--limit", dest="eval_limit", type=int, help="evaluate only the first N images")
    group.add_argument("--prompt", choices=("box", "point", "box+point"), help="prompt given to the model")


def add_train_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--shots", type=int, help="k training images per class (few-shot); default: all")
    group.add_argument("--steps", type=int, help="optimiser steps (default 200)")
    group.add_argument("--batch-size", type=int, help="images per step (default 4)")
    group.add_argument("--lr", type=float, help="learning rate of pretrained weights that train (default 1e-4)")
    group.add_argument("--adapter-lr", type=float, help="learning rate of adapter-added weights (default 1e-3)")
    group.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 0.01)")
    group.add_argument("--grad-accum", type=int, help="gradient accumulation steps (default 1)")
    group.add_argument("--seed", type=int, help="seed for data order, augmentation, init (default 0)")
    group.add_argument("--cache-dir", help="also keep cached frozen-encoder embeddings on disk here")
    group.add_argument("--wandb", action="store_true", default=None, help="log to Weights & Biases (offline works)")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")


def load_config_file(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"adaptsam: error: cannot read config file {path}: {exc}") from exc
    if not isinstance(values, dict):
        raise SystemExit(f"adaptsam: error: {path} must hold a mapping of options, got {type(values).__name__}.")
    return values


def experiment_from_args(args: argparse.Namespace) -> Experiment:
    """YAML config (``--config``) first, then every flag given on the command line overrides it."""
    values = load_config_file(getattr(args, "config", None))
    train = dict(values.pop("train", {}) or {})
    for key in ("backbone", "checkpoint", "adapter", "policy", "resolution", "data", "shots", "seed", "eval_split",
                "eval_limit", "prompt"):
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    if getattr(args, "random_init", None):
        values["pretrained"] = False
    for key in ("adapter_cfg", "policy_cfg"):
        given = parse_mapping(getattr(args, key, None))
        if given:
            values[key] = {**values.get(key, {}), **given}
    for flag, name in TRAIN_FLAGS.items():
        if getattr(args, flag, None) is not None:
            train[name] = getattr(args, flag)
    if "seed" in values:
        train.setdefault("seed", values["seed"])
    if getattr(args, "wandb", None):
        train["wandb"] = True
    if getattr(args, "no_progress", False):
        train["progress"] = False
    values["train"] = {**{k: v for k, v in vars(TrainConfig()).items() if k in train}, **train}
    return Experiment.from_dict(values)
