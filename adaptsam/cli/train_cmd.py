"""``adaptsam train``: train one adapter and evaluate it; writes adapter.safetensors and metrics.json."""

from __future__ import annotations

import argparse
import dataclasses
import json

from adaptsam.cli._options import (
    add_data_options,
    add_model_options,
    add_train_options,
    check_out_dir,
    experiment_from_args,
    fetch_checkpoints,
)

ORDER = 30


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train one adapter, evaluate it at R, save it",
        description="Train an adapter on a dataset degraded to R×R, evaluate on its test split, and write "
                    "OUT/adapter.safetensors and OUT/metrics.json. Options come from --config run.yaml (same "
                    "keys as the flags, training options under 'train:') with flags overriding it. Runs under "
                    "torchrun for several processes (torchrun --nproc_per_node 2 -m adaptsam train ...).",
        epilog="example: adaptsam train --backbone lite_medsam --adapter lora --adapter-cfg rank=8 --policy native "
               "-R 128 --data kvasir_seg --steps 300 --out runs/lora")
    parser.add_argument("--config", help="YAML file with the same options")
    add_model_options(parser)
    add_data_options(parser)
    add_train_options(parser)
    parser.add_argument("--out", required=True, help="output folder (a folder holding a finished run is refused "
                                                      "unless --force)")
    parser.add_argument("--force", action="store_true", help="overwrite the finished run in --out")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from adaptsam.engine.distributed import init_distributed, shutdown
    from adaptsam.engine.experiment import run_experiment

    experiment = experiment_from_args(args)  # every value checked before anything is built
    check_out_dir(args.out, force=args.force)
    fetch_checkpoints([experiment.backbone], download=args.download and experiment.checkpoint is None)
    context = init_distributed(experiment.device)
    if context.distributed:  # each rank on its own GPU (cuda:LOCAL_RANK), or the CPU
        experiment = dataclasses.replace(experiment, device=context.device)
    try:
        result = run_experiment(experiment, args.out, context=context, progress=experiment.train.progress)
    finally:
        shutdown(context)
    if context.is_main and result.evaluation is not None:
        e = result.evaluation
        print(json.dumps({"mean_dice": round(e.mean_dice, 4), "mean_iou": round(e.mean_iou, 4),
                          "n_images": e.n_images, "split": e.split, "steps": result.train.steps,
                          "train_s": round(result.train.seconds, 1), "out": str(args.out)}))
    return 0
