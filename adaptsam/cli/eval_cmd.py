"""``adaptsam eval``: score a saved adapter (or the zero-shot model) at R; writes metrics.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adaptsam.cli._options import (
    add_data_options,
    add_model_options,
    check_out_dir,
    device_from_args,
    experiment_from_args,
    fetch_checkpoints,
)
from adaptsam.errors import ConfigError, IncompatibleError

ORDER = 31


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a saved adapter, or a zero-shot model, at R",
        description="Evaluate --weights ADAPTER.safetensors (backbone, policy and R come from the file), or a "
                    "model given by --backbone/--adapter frozen/--policy/-R, on a dataset's split. Writes "
                    "OUT/metrics.json (mean_dice, mean_iou, per-class scores, per-image scores).",
        epilog="example: adaptsam eval --backbone lite_medsam --adapter frozen --policy native -R 128 "
               "--data kvasir_seg --out runs/zero-shot")
    parser.add_argument("--weights", help="adapter file written by adaptsam train / save_adapter")
    parser.add_argument("--config", help="YAML file with the same options")
    add_model_options(parser, adapter_default=None)
    add_data_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--out", required=True, help="output folder (one holding a finished run's metrics.json is "
                                                      "refused unless --force)")
    parser.add_argument("--force", action="store_true", help="overwrite metrics.json in --out")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import adaptsam
    from adaptsam.devices import resolve_precision
    from adaptsam.engine.evaluate import evaluate
    from adaptsam.engine.experiment import build_model, test_data, write_json

    if args.weights:
        _refuse_conflicts(args)
        experiment_from_args(args)  # the other flags are checked before the model is built
        check_out_dir(args.out, force=args.force, finished=("metrics.json",))
        model = adaptsam.load_adapter(args.weights, checkpoint=args.checkpoint, download=args.download,
                                      device=device_from_args(args))
        args.backbone, args.adapter = model.info.name, model.adapter.name
        args.policy, args.resolution = model.policy.name, model.resolution
    experiment = experiment_from_args(args)
    if not args.weights:
        if args.adapter not in (None, "frozen"):
            raise ConfigError(f"Without --weights only --adapter frozen makes sense (an untrained {args.adapter!r} "
                              f"adapter is the frozen model); pass --weights FILE.")
        check_out_dir(args.out, force=args.force, finished=("metrics.json",))
        fetch_checkpoints([experiment.backbone], download=args.download and experiment.checkpoint is None)
        model = build_model(experiment)
    precision = resolve_precision(experiment.precision, model.device)
    result = evaluate(model, test_data(experiment), prompt=experiment.prompt, progress=not args.no_progress,
                      precision=precision)
    payload = {**result.to_dict(), "experiment": experiment.to_dict(), "weights": args.weights,
               "backbone_pretrained": model.info.pretrained, "device": str(model.device), "precision": precision}
    write_json(Path(args.out) / "metrics.json", payload)
    print(json.dumps({"mean_dice": round(result.mean_dice, 4), "mean_iou": round(result.mean_iou, 4),
                      "n_images": result.n_images, "split": result.split, "out": str(args.out)}))
    return 0


def _refuse_conflicts(args: argparse.Namespace) -> None:
    """An adapter file fixes backbone, adapter, policy, R and their options: a flag asking for another is
    refused (as ``predict`` does) rather than silently ignored."""
    from adaptsam.adapters.io import read_metadata

    meta = read_metadata(args.weights)
    policy = json.loads(meta["policy"])
    made = {"backbone": meta["backbone"], "adapter": meta["adapter"], "policy": policy["name"],
            "resolution": int(meta["resolution"])}
    for key, asked in (("backbone", args.backbone), ("adapter", args.adapter), ("policy", args.policy),
                       ("resolution", args.resolution)):
        if asked is not None and asked != made[key]:
            raise IncompatibleError(f"{args.weights} was made for {key} {made[key]!r}, but --{key} {asked!r} was "
                                    f"given. Drop --{key} (the adapter file names its own) or use an adapter file "
                                    f"trained for {asked!r}.")
    for flag in ("adapter_cfg", "policy_cfg"):
        if getattr(args, flag):
            raise IncompatibleError(f"--{flag.replace('_', '-')} cannot change {args.weights}: the adapter file "
                                    f"holds its own options. Drop --{flag.replace('_', '-')}.")
